/*
 * An always-continue child for bench/sessions.py: a plain libmilter milter
 * with every callback set, so every stage is sent and replied to (no "no
 * event" and no "no reply" step flags), like an old milter that has not
 * learnt protocol version 6's short cuts.
 *
 * Build: gcc -O2 -o continue_milter continue_milter.c -lmilter -pthread
 * Run:   continue_milter unix:/path/to/socket
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <libmilter/mfapi.h>

static sfsistat on_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *addr)
{ (void)ctx; (void)host; (void)addr; return SMFIS_CONTINUE; }
static sfsistat on_helo(SMFICTX *ctx, char *name)
{ (void)ctx; (void)name; return SMFIS_CONTINUE; }
static sfsistat on_envfrom(SMFICTX *ctx, char **argv)
{ (void)ctx; (void)argv; return SMFIS_CONTINUE; }
static sfsistat on_envrcpt(SMFICTX *ctx, char **argv)
{ (void)ctx; (void)argv; return SMFIS_CONTINUE; }
static sfsistat on_data(SMFICTX *ctx)
{ (void)ctx; return SMFIS_CONTINUE; }
static sfsistat on_unknown(SMFICTX *ctx, const char *command)
{ (void)ctx; (void)command; return SMFIS_CONTINUE; }
static sfsistat on_header(SMFICTX *ctx, char *name, char *value)
{ (void)ctx; (void)name; (void)value; return SMFIS_CONTINUE; }
static sfsistat on_eoh(SMFICTX *ctx)
{ (void)ctx; return SMFIS_CONTINUE; }
static sfsistat on_body(SMFICTX *ctx, unsigned char *chunk, size_t size)
{ (void)ctx; (void)chunk; (void)size; return SMFIS_CONTINUE; }
static sfsistat on_eom(SMFICTX *ctx)
{ (void)ctx; return SMFIS_CONTINUE; }
static sfsistat on_abort(SMFICTX *ctx)
{ (void)ctx; return SMFIS_CONTINUE; }
static sfsistat on_close(SMFICTX *ctx)
{ (void)ctx; return SMFIS_CONTINUE; }

static struct smfiDesc description = {
    "continue_milter",
    SMFI_VERSION,
    0,              /* asks for no actions */
    on_connect,
    on_helo,
    on_envfrom,
    on_envrcpt,
    on_header,
    on_eoh,
    on_body,
    on_eom,
    on_abort,
    on_close,
    on_unknown,
    on_data,
    NULL,           /* no negotiate callback: libmilter's default answer */
};

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s unix:/path/to/socket\n", argv[0]);
        return 2;
    }
    if (smfi_setconn(argv[1]) == MI_FAILURE
        || smfi_setbacklog(4096) == MI_FAILURE
        || smfi_register(description) == MI_FAILURE) {
        fprintf(stderr, "%s: cannot set up libmilter\n", argv[0]);
        return 1;
    }
    return smfi_main() == MI_SUCCESS ? 0 : 1;
}
