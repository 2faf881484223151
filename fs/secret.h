/*
 * secret.h — getting a passphrase or key into secure memory.
 *
 * From a terminal (echo off), a file (--passfile), or the standard output of
 * a command (--extpass, e.g. systemd-ask-password or a vault client).  The
 * bytes never pass through an ordinary heap buffer.
 */
#ifndef CUSTODIAN_SECRET_H
#define CUSTODIAN_SECRET_H

#include <stdbool.h>
#include <stddef.h>

#include "errs.h"

#define SECRET_MAX 4096 /* longest accepted passphrase or keyfile */

struct secret {
	char *buf;  /* secure memory, NUL-terminated */
	size_t len; /* bytes, excluding the NUL */
};

/* Reads a file; one trailing "\n" (or "\r\n") is dropped.  -EINVAL if empty
 * or longer than SECRET_MAX. */
int secret_from_file(const char *path, struct secret **out) MUST_CHECK;

/* Prompts on /dev/tty with echo off; with confirm, asks twice and returns
 * -EINVAL if they differ.  -ENOTTY if there is no terminal. */
int secret_from_tty(const char *prompt, bool confirm, struct secret **out) MUST_CHECK;

/* Runs `sh -c cmd`, reads its standard output (one trailing newline
 * dropped).  -EIO if the command fails or prints nothing. */
int secret_from_cmd(const char *cmd, struct secret **out) MUST_CHECK;

/* Wipes and frees; NULL accepted. */
void secret_free(struct secret *s);

#endif
