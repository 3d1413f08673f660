/*
 * A no-reply child for bench/big_messages.py: a libmilter milter that asks
 * (protocol 6 negotiate callback) to get only the body and end-of-message,
 * and for no reply to the body chunks, the way modern milters cut round trips.
 * mmd must then stream the whole body to it without waiting for any answer:
 * the case where its flow control matters most. With --replace it also
 * replaces the body at end-of-message by one of the same size, so that mmd
 * has to stream a big new body to the MTA as well.
 *
 * Build: gcc -O2 -o noreply_milter noreply_milter.c -lmilter -pthread
 * Run:   noreply_milter unix:/path/to/socket [--replace]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <libmilter/mfapi.h>

static int replace;  /* --replace: a new body of the same size at end-of-message */

#define WANTED_SKIPS (SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOMAIL | SMFIP_NORCPT \
                      | SMFIP_NOHDRS | SMFIP_NOEOH | SMFIP_NOUNKNOWN | SMFIP_NODATA \
                      | SMFIP_NR_BODY)

static sfsistat on_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
                             unsigned long f2, unsigned long f3, unsigned long *pf0,
                             unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
    (void)ctx; (void)f0; (void)f2; (void)f3;
    *pf0 = replace ? SMFIF_CHGBODY : 0;
    *pf1 = f1 & WANTED_SKIPS;
    *pf2 = 0;
    *pf3 = 0;
    return SMFIS_CONTINUE;
}
static sfsistat on_body(SMFICTX *ctx, unsigned char *chunk, size_t size)
{
    size_t *seen = smfi_getpriv(ctx);
    (void)chunk;
    if (replace) {
        if (seen == NULL) {
            seen = calloc(1, sizeof *seen);
            smfi_setpriv(ctx, seen);
        }
        if (seen != NULL)
            *seen += size;
    }
    return SMFIS_NOREPLY;
}
static sfsistat on_eom(SMFICTX *ctx)
{
    static unsigned char piece[65535];
    size_t *seen = smfi_getpriv(ctx);
    if (seen != NULL) {
        size_t left = *seen;
        memset(piece, 'y', sizeof piece);
        while (left > 0) {
            size_t size = left < sizeof piece ? left : sizeof piece;
            if (smfi_replacebody(ctx, piece, (int)size) != MI_SUCCESS)
                break;
            left -= size;
        }
        free(seen);
        smfi_setpriv(ctx, NULL);
    }
    return SMFIS_CONTINUE;
}
static sfsistat on_abort(SMFICTX *ctx)
{
    free(smfi_getpriv(ctx));
    smfi_setpriv(ctx, NULL);
    return SMFIS_CONTINUE;
}

static struct smfiDesc description = {
    "noreply_milter",
    SMFI_VERSION,
    0,
    NULL, NULL, NULL, NULL, NULL, NULL,  /* connect .. end-of-header: not wanted */
    on_body,
    on_eom,
    on_abort,
    NULL, NULL, NULL,                    /* close, unknown, data */
    on_negotiate,
};

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3 || (argc == 3 && strcmp(argv[2], "--replace") != 0)) {
        fprintf(stderr, "usage: %s unix:/path/to/socket [--replace]\n", argv[0]);
        return 2;
    }
    replace = argc == 3;
    if (replace)
        description.xxfi_flags = SMFIF_CHGBODY;
    if (smfi_setconn(argv[1]) == MI_FAILURE
        || smfi_setbacklog(256) == MI_FAILURE
        || smfi_register(description) == MI_FAILURE) {
        fprintf(stderr, "%s: cannot set up libmilter\n", argv[0]);
        return 1;
    }
    return smfi_main() == MI_SUCCESS ? 0 : 1;
}
