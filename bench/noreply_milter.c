/*
 * A no-reply child for bench/big_messages.py: a libmilter milter that asks
 * (protocol 6 negotiate callback) to get only the body and end-of-message,
 * and for no reply to the body chunks, the way modern milters cut round trips.
 * mmd must then stream the whole body to it without waiting for any answer:
 * the case where its flow control matters most.
 *
 * Build: gcc -O2 -o noreply_milter noreply_milter.c -lmilter -pthread
 * Run:   noreply_milter unix:/path/to/socket
 */
#include <stdio.h>
#include <sys/types.h>
#include <libmilter/mfapi.h>

#define WANTED_SKIPS (SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOMAIL | SMFIP_NORCPT \
                      | SMFIP_NOHDRS | SMFIP_NOEOH | SMFIP_NOUNKNOWN | SMFIP_NODATA \
                      | SMFIP_NR_BODY)

static sfsistat on_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
                             unsigned long f2, unsigned long f3, unsigned long *pf0,
                             unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
    (void)ctx; (void)f0; (void)f2; (void)f3;
    *pf0 = 0;                   /* asks for no actions */
    *pf1 = f1 & WANTED_SKIPS;
    *pf2 = 0;
    *pf3 = 0;
    return SMFIS_CONTINUE;
}
static sfsistat on_body(SMFICTX *ctx, unsigned char *chunk, size_t size)
{ (void)ctx; (void)chunk; (void)size; return SMFIS_NOREPLY; }
static sfsistat on_eom(SMFICTX *ctx)
{ (void)ctx; return SMFIS_CONTINUE; }

static struct smfiDesc description = {
    "noreply_milter",
    SMFI_VERSION,
    0,
    NULL, NULL, NULL, NULL, NULL, NULL,  /* connect .. end-of-header: not wanted */
    on_body,
    on_eom,
    NULL, NULL, NULL, NULL,              /* abort, close, unknown, data */
    on_negotiate,
};

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s unix:/path/to/socket\n", argv[0]);
        return 2;
    }
    if (smfi_setconn(argv[1]) == MI_FAILURE
        || smfi_setbacklog(256) == MI_FAILURE
        || smfi_register(description) == MI_FAILURE) {
        fprintf(stderr, "%s: cannot set up libmilter\n", argv[0]);
        return 1;
    }
    return smfi_main() == MI_SUCCESS ? 0 : 1;
}
