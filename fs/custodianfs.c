/*
 * custodianfs.c — main of the FUSE daemon: options, unlocking, mounting,
 * the session loop and an orderly unwind.
 *
 *   custodianfs [options] STORE MOUNTPOINT
 *   custodianfs STORE MOUNTPOINT -o opts        (mount.fuse3 / fstab order)
 *
 * Everything that can fail is done before the mount, and any such failure
 * is one line "custodianfs: STORE: reason" and exit status 1 with nothing
 * mounted.  Without -f the daemon forks before it touches a key (memory
 * locks are not inherited across fork, so keys must be born in the process
 * that keeps them); the parent waits until the child reports the mount
 * ready, so `custodianfs ... && ls MNT` works, and exits with the child's
 * status if it fails.  Once mounted the daemon never exit()s: it unmounts,
 * wipes the keys and unwinds.
 *
 * Also owns the daemon's side of the control channel (control.h): the
 * verbs the admin tool may send a running daemon, e.g. "policy-reload"
 * after `custodian policy apply`.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include "audit.h"
#include "chan.h"
#include "control.h"
#include "crypt.h"
#include "ops.h"
#include "secret.h"
#include "store.h"
#include "subjects.h"

#define CFS_VERSION "0.1"
#define CFS_DEFAULT_TIMEOUT 1.0
/* Read-ahead of the mount (the kernel's default is 128 KiB): every block
 * is decrypted by the daemon, and a larger window keeps both cores at it
 * (cold sequential read, 256 MiB: ~580 MB/s at 128 KiB, ~870 at 1 MiB). */
#define CFS_READ_AHEAD_KB 1024
#define CFS_IDLE_THREADS 16
#define CFS_MIN_THREADS 10

/* Options of our own, filled by fuse_opt_parse. */
struct cfs_opts {
	char *store;          /* first non-option argument */
	char *passfile;       /* --passfile / -o passfile= */
	char *extpass;        /* --extpass / -o extpass= */
	char *keyfile;        /* --keyfile / -o keyfile= */
	int writeback;        /* -o writeback */
	double attr_timeout;  /* -o attr_timeout= */
	double entry_timeout; /* -o entry_timeout= */
	int readonly;         /* -o ro (also passed on to the mount) */
	int no_allow_other;   /* -o noallow_other: only the mounting user */
	int strict_walks;     /* -o strict_walks: no names cached in
				 directories not everybody may search */
	char *audit_sync;     /* -o audit_sync=normal|full */
	char *audit_syslog;   /* -o audit_syslog=yes|no */
	char *audit_batch_ms; /* -o audit_batch_ms=N */
	int read_ahead_kb;    /* -o read_ahead_kb=N (-1: the default) */
};

enum {
	KEY_RO,
	KEY_RW,
};

#define CFS_OPT(t, f, v)                                                                 \
	{                                                                                \
		t, offsetof(struct cfs_opts, f), v                                       \
	}

static const struct fuse_opt cfs_opt_spec[] = {
	CFS_OPT("--passfile %s", passfile, 0),
	CFS_OPT("--passfile=%s", passfile, 0),
	CFS_OPT("passfile=%s", passfile, 0),
	CFS_OPT("--extpass %s", extpass, 0),
	CFS_OPT("--extpass=%s", extpass, 0),
	CFS_OPT("extpass=%s", extpass, 0),
	CFS_OPT("--keyfile %s", keyfile, 0),
	CFS_OPT("--keyfile=%s", keyfile, 0),
	CFS_OPT("keyfile=%s", keyfile, 0),
	CFS_OPT("writeback", writeback, 1),
	CFS_OPT("no_writeback", writeback, 0),
	CFS_OPT("attr_timeout=%lf", attr_timeout, 0),
	CFS_OPT("entry_timeout=%lf", entry_timeout, 0),
	CFS_OPT("noallow_other", no_allow_other, 1),
	CFS_OPT("strict_walks", strict_walks, 1),
	CFS_OPT("audit_sync=%s", audit_sync, 0),
	CFS_OPT("audit_syslog=%s", audit_syslog, 0),
	CFS_OPT("audit_batch_ms=%s", audit_batch_ms, 0),
	CFS_OPT("read_ahead_kb=%d", read_ahead_kb, 0),
	FUSE_OPT_KEY("ro", KEY_RO),
	FUSE_OPT_KEY("rw", KEY_RW),
	FUSE_OPT_END,
};

/* ---- logging ------------------------------------------------------------ */

/* Where fuse_log (ours and libfuse's) goes: while setting up, the first
 * error is kept to be reported as our one line; once mounted, stderr in
 * the foreground or syslog as a daemon. */
enum cfs_log_mode {
	CFS_LOG_SETUP,
	CFS_LOG_STDERR,
	CFS_LOG_SYSLOG,
};

static enum cfs_log_mode log_mode = CFS_LOG_SETUP; /* main thread only,
						      before the loop starts */
static bool log_debug;                             /* -d: keep debug messages */
static char setup_error[256];                      /* first error while setting up */
static bool setup_error_done;                      /* setup_error holds a whole line */

/* libfuse writes some errors in pieces: collect up to the first newline. */
static void setup_error_add(const char *piece)
{
	size_t have = strlen(setup_error);
	size_t n;

	if (setup_error_done)
		return;
	if (have == 0 && strncmp(piece, "fuse: ", 6) == 0)
		piece += 6;
	n = strcspn(piece, "\n");
	if (n > sizeof(setup_error) - 1 - have)
		n = sizeof(setup_error) - 1 - have;
	memcpy(setup_error + have, piece, n);
	setup_error[have + n] = '\0';
	if (strchr(piece, '\n'))
		setup_error_done = true;
}

static void cfs_log(enum fuse_log_level level, const char *fmt, va_list ap)
{
	char msg[1024];
	size_t len;

	/* Debug messages may carry plaintext paths (policy denials): only
	 * with -d. */
	if (level >= FUSE_LOG_DEBUG && !log_debug)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (log_mode == CFS_LOG_SETUP && level <= FUSE_LOG_ERR) {
		setup_error_add(msg);
		return;
	}
	len = strlen(msg);
	while (len > 0 && msg[len - 1] == '\n')
		msg[--len] = '\0';
	if (log_mode == CFS_LOG_SYSLOG)
		syslog((int)level, "%s", msg);
	else
		fprintf(stderr, "%s\n", msg);
}

/* The one line a failure before mounting prints. */
static void fail(const char *store, const char *why)
{
	if (store)
		fprintf(stderr, "custodianfs: %s: %s\n", store, why);
	else
		fprintf(stderr, "custodianfs: %s\n", why);
}

/* ---- usage -------------------------------------------------------------- */

static void usage(const char *prog)
{
	printf("usage: %s [options] STORE MOUNTPOINT\n"
	       "       %s STORE MOUNTPOINT -o OPTIONS   (mount.fuse3 / fstab order)\n"
	       "\n"
	       "Unlocking (default: ask for the passphrase on the terminal):\n"
	       "    --passfile FILE, -o passfile=FILE\n"
	       "                           read the passphrase from FILE (default: "
	       "none)\n"
	       "    --extpass CMD, -o extpass=CMD\n"
	       "                           run `sh -c CMD` and read the passphrase from\n"
	       "                           its output (default: none)\n"
	       "    --keyfile FILE, -o keyfile=FILE\n"
	       "                           unlock with the key file FILE (default: "
	       "none)\n"
	       "\n"
	       "custodianfs options:\n"
	       "    -o writeback           kernel writeback cache (default: off)\n"
	       "    -o attr_timeout=S      seconds the kernel caches attributes\n"
	       "                           (default: %.1f)\n"
	       "    -o entry_timeout=S     seconds the kernel caches names (default: "
	       "%.1f)\n"
	       "    -o ro                  mount read-only; the store is opened "
	       "read-only\n"
	       "                           (default: read-write)\n"
	       "    -o allow_other         let every user reach the mount (default: "
	       "on when\n"
	       "                           run as root, so agents can use it; the "
	       "policy and\n"
	       "                           mode bits decide what they may do)\n"
	       "    -o noallow_other       only the mounting user may use the mount\n"
	       "    -o strict_walks        cache no name at all in a directory not "
	       "everybody\n"
	       "                           may search (default: directory names are "
	       "cached\n"
	       "                           and every request checks the path above)\n"
	       "    -o read_ahead_kb=N     kernel read-ahead of the mount in KiB; 0 "
	       "leaves\n"
	       "                           the kernel's (default: %d)\n"
	       "\n"
	       "Audit log (always on; every open, denial and change is recorded\n"
	       "before the caller gets its answer; see docs/audit.md):\n"
	       "    -o audit_sync=normal|full\n"
	       "                           normal: a record survives a crash of the "
	       "daemon;\n"
	       "                           full: also a power loss (fdatasync, group\n"
	       "                           commit) (default: normal)\n"
	       "    -o audit_syslog=yes|no also send each record, without names, to "
	       "syslog\n"
	       "                           (LOG_AUTHPRIV) (default: no)\n"
	       "    -o audit_batch_ms=N    longest wait before records are committed to "
	       "the\n"
	       "                           database (default: %d)\n"
	       "    always set: -o fsname=<realpath of STORE>,"
	       "subtype=custodian\n"
	       "\n"
	       "A policy applied to the store (custodian policy apply) is enforced "
	       "from the\n"
	       "mount on, and a new version from the next operation after apply "
	       "returns\n"
	       "(through STORE/control.sock).  See docs/daemon.md.\n"
	       "\n"
	       "General options:\n"
	       "    -h, --help             print this help and exit\n"
	       "    -V, --version          print the version and exit\n"
	       "    -f                     stay in the foreground (default: daemon)\n"
	       "    -d, -o debug           log every request; implies -f (default: off)\n"
	       "    -s                     single-threaded (default: multi-threaded)\n"
	       "    -o clone_fd            one /dev/fuse fd per thread (default: on)\n"
	       "    -o max_idle_threads=N  idle worker threads kept (default: %d)\n"
	       "    -o max_threads=N       most worker threads (default: max(%d, 2 x "
	       "CPUs))\n"
	       "\n"
	       "FUSE mount options (passed through):\n",
	       prog, prog, CFS_DEFAULT_TIMEOUT, CFS_DEFAULT_TIMEOUT, CFS_READ_AHEAD_KB,
	       AUDIT_BATCH_MS_DEFAULT, CFS_IDLE_THREADS, CFS_MIN_THREADS);
	fflush(stdout);
	fuse_lowlevel_help();
	printf("    -o ro, -o rw, -o nosuid, -o nodev, -o noexec, -o noatime, ...\n"
	       "                           generic mount options (default: rw)\n");
}

/* ---- option parsing ---------------------------------------------------- */

static int cfs_opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct cfs_opts *o = data;

	(void)outargs;
	switch (key) {
	case FUSE_OPT_KEY_NONOPT:
		if (!o->store) {
			o->store = strdup(arg);
			return o->store ? 0 : -1;
		}
		return 1; /* MOUNTPOINT: fuse_parse_cmdline takes it */
	case KEY_RO:
		o->readonly = 1;
		return 1; /* the kernel must see it too */
	case KEY_RW:
		o->readonly = 0;
		return 1;
	default:
		return 1;
	}
}

/* Adds the options every custodian mount has (and allow_other for root
 * unless turned off). */
static int add_mount_options(struct fuse_args *args, const char *store_real,
			     bool allow_other)
{
	char *opts = NULL, *fsname = NULL;
	int ret = -1;

	if (asprintf(&fsname, "fsname=%s", store_real) < 0) {
		fsname = NULL;
		goto out;
	}
	/* No default_permissions: the daemon checks mode bits itself (perm.h;
	 * docs/daemon.md, "Permissions").  Passing -o default_permissions
	 * adds the kernel's checks on top. */
	if (fuse_opt_add_opt(&opts, "subtype=custodian") != 0 ||
	    fuse_opt_add_opt_escaped(&opts, fsname) != 0)
		goto out;
	if (allow_other && fuse_opt_add_opt(&opts, "allow_other") != 0)
		goto out;
	if (fuse_opt_add_arg(args, "-o") != 0 || fuse_opt_add_arg(args, opts) != 0)
		goto out;
	ret = 0;
out:
	free(opts);
	free(fsname);
	return ret;
}

/* ---- daemon ------------------------------------------------------------- */

/* Forks; only the child returns (0, with *notify_fd set).  The parent waits
 * for the child's "mounted" byte and exits 0, or exits with the child's
 * status if it fails first. */
static int daemon_fork(int *notify_fd)
{
	int p[2];
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) != 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		int err = errno;

		close(p[0]);
		close(p[1]);
		return -err;
	}
	if (pid > 0) {
		char c = 1;
		ssize_t n;
		int status = 0;

		close(p[1]);
		do
			n = read(p[0], &c, 1);
		while (n < 0 && errno == EINTR);
		if (n == 1 && c == 0)
			_exit(0);
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		_exit(WIFEXITED(status) && WEXITSTATUS(status) ? WEXITSTATUS(status) : 1);
	}
	close(p[0]);
	*notify_fd = p[1];
	return 0;
}

/* Detaches from the terminal and tells the parent the mount is ready. */
static void daemon_ready(int notify_fd)
{
	char c = 0;
	int nullfd;

	(void)setsid();
	(void)chdir("/");
	nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (nullfd >= 0) {
		(void)dup2(nullfd, STDIN_FILENO);
		(void)dup2(nullfd, STDOUT_FILENO);
		(void)dup2(nullfd, STDERR_FILENO);
		if (nullfd > STDERR_FILENO)
			close(nullfd);
	}
	openlog("custodianfs", LOG_PID, LOG_DAEMON);
	log_mode = CFS_LOG_SYSLOG;
	while (write(notify_fd, &c, 1) < 0 && errno == EINTR)
		;
	close(notify_fd);
}

/* ---- unlocking ---------------------------------------------------------- */

/* Reads the one secret source and unlocks; prints nothing, *why gets the
 * reason on failure. */
static int unlock_store(struct store *st, const struct cfs_opts *o, const char **why)
{
	struct secret *sec = NULL;
	char *prompt = NULL;
	int ret;

	*why = NULL;
	if (o->passfile) {
		ret = secret_from_file(o->passfile, &sec);
		if (ret < 0)
			*why = ret == -EINVAL
				       ? "passfile is empty or longer than 4096 bytes"
				       : "cannot read the passfile";
	} else if (o->keyfile) {
		ret = secret_from_file(o->keyfile, &sec);
		if (ret < 0)
			*why = ret == -EINVAL
				       ? "keyfile is empty or longer than 4096 bytes"
				       : "cannot read the keyfile";
	} else if (o->extpass) {
		ret = secret_from_cmd(o->extpass, &sec);
		if (ret < 0)
			*why = "extpass command failed or printed nothing";
	} else {
		if (asprintf(&prompt, "Passphrase for %s: ", o->store) < 0) {
			prompt = NULL;
			ret = -ENOMEM;
			goto out;
		}
		ret = secret_from_tty(prompt, false, &sec);
		if (ret == -ENOTTY)
			*why = "no terminal to ask for the passphrase (use --passfile, "
			       "--extpass or --keyfile)";
	}
	if (ret < 0)
		goto out;
	if (o->keyfile)
		ret = store_unlock_keyfile(st, sec);
	else
		ret = store_unlock_passphrase(st, sec);
	if (ret == -ENOENT)
		*why = o->keyfile ? "the store has no key file slot"
				  : "the store has no passphrase slot";
out:
	secret_free(sec);
	free(prompt);
	return ret;
}

static void no_core_dumps(void)
{
	const struct rlimit zero = {0, 0};

	/* Keys are in MADV_DONTDUMP memory already; plaintext in transit is
	 * not, so no core file at all. */
	(void)setrlimit(RLIMIT_CORE, &zero);
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

/* Directories the kernel holds keep an O_PATH fd open (files do not), and
 * every open file is a descriptor, so a busy share needs more than the
 * usual soft limit of 1024: take the system maximum if allowed, else the
 * hard limit.  Running out is not fatal: the request gets EMFILE. */
static void raise_fd_limit(void)
{
	struct rlimit rl;
	unsigned long max = 0;
	FILE *f = fopen("/proc/sys/fs/nr_open", "re");

	if (f) {
		if (fscanf(f, "%lu", &max) != 1)
			max = 0;
		fclose(f);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (max > rl.rlim_max) {
		struct rlimit want = {max, max};

		if (setrlimit(RLIMIT_NOFILE, &want) == 0)
			return;
	}
	rl.rlim_cur = rl.rlim_max;
	(void)setrlimit(RLIMIT_NOFILE, &rl);
}

static unsigned default_max_threads(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned t = n > 0 ? (unsigned)n * 2 : CFS_MIN_THREADS;

	return t < CFS_MIN_THREADS ? CFS_MIN_THREADS : t;
}

/* ---- control channel ------------------------------------------------------ */

/* Records an event of the daemon itself or of an administrator (who:
 * NULL = this process).  0 or -errno. */
static int audit_admin(struct ops_fs *fs, const struct audit_who *who, const char *op,
		       int outcome, const char *detail)
{
	struct audit_who self;
	struct audit_event ev = {
		.op = op,
		.outcome = outcome < 0 ? -outcome : outcome,
		.detail = detail,
	};

	if (!who) {
		audit_who_self(&self);
		who = &self;
	}
	ev.who = who;
	return audit_append(fs->audit, &ev, NULL);
}

/* "policy-reload": put the newest stored policy in force now (recorded:
 * op policy, the outcome and the reply, which holds no names). */
static int ctl_policy_reload(void *ctx, const char *args, char *reply, size_t cap)
{
	struct ops_fs *fs = ctx;
	char detail[CONTROL_MSG_MAX];
	int ret, aret;

	(void)args;
	ret = ops_policy_reload(fs, reply, cap);
	/* -ENOENT would read as "no daemon" to the client. */
	if (ret == -ENOENT)
		ret = atomic_load(&fs->pol_on) ? -ENODATA : 0;
	fuse_log(ret < 0 ? FUSE_LOG_ERR : FUSE_LOG_INFO,
		 "custodianfs: policy reload: %s\n", reply);
	snprintf(detail, sizeof(detail), "reload: %s", reply);
	aret = audit_admin(fs, NULL, AUDIT_OP_POLICY, ret, detail);
	if (aret < 0 && ret == 0) {
		snprintf(reply, cap, "policy reloaded but not recorded: %s",
			 strerror(-aret));
		ret = -EIO;
	}
	return ret;
}

static int ctl_token(const char **args, char *out, size_t cap);

/*
 * "audit-admin PID OP OUTCOME [path=hex:HEX] [subject=HEX] DETAIL": an
 * admin tool that changed or read the store while it is mounted (the
 * daemon holds the journal lock) records its event through the daemon.
 * Only root reaches the channel; the record's who is looked up from PID
 * (the tool, still waiting for the reply).  The optional path (a directory
 * hold's) is sealed under the volume keys; the optional subject is a
 * subject hash (2 * CRYPT_HASH_BYTES hex digits).  The old form without
 * them still works.  Replies "seq N".
 */
static int ctl_audit_admin(void *ctx, const char *args, char *reply, size_t cap)
{
	struct ops_fs *fs = ctx;
	struct audit_event ev = {0};
	struct audit_who who;
	char op[16], *path = NULL;
	uint8_t subject[CRYPT_HASH_BYTES];
	const char *rest;
	long pid;
	int outcome, used = 0, ret;
	uint64_t seq;

	if (sscanf(args, "%ld %15s %d %n", &pid, op, &outcome, &used) < 3 || used == 0 ||
	    pid <= 0 || pid > INT32_MAX || outcome < 0)
		goto usage;
	rest = args + used;
	if (strncmp(rest, "path=hex:", 9) == 0) {
		rest += 5;
		path = malloc(AUDIT_PATH_MAX + 1);
		if (!path) {
			snprintf(reply, cap, "%s", strerror(ENOMEM));
			return -ENOMEM;
		}
		if (ctl_token(&rest, path, AUDIT_PATH_MAX + 1) < 0 || path[0] != '/')
			goto usage;
	}
	if (strncmp(rest, "subject=", 8) == 0) {
		rest += 8;
		for (size_t i = 0; i < CRYPT_HASH_BYTES; i++) {
			unsigned v;

			if (!isxdigit((unsigned char)rest[2 * i]) ||
			    !isxdigit((unsigned char)rest[2 * i + 1]) ||
			    sscanf(rest + 2 * i, "%2x", &v) != 1)
				goto usage;
			subject[i] = (uint8_t)v;
		}
		rest += 2 * CRYPT_HASH_BYTES;
		if (*rest != ' ' && *rest != '\0')
			goto usage;
		while (*rest == ' ')
			rest++;
		ev.subject = subject;
	}
	/* The tool runs as root: uid/gid are its own. */
	audit_who((pid_t)pid, 0, 0, &who);
	ev.op = op;
	ev.outcome = outcome;
	ev.who = &who;
	ev.path = path;
	ev.detail = rest;
	ret = audit_append(fs->audit, &ev, &seq);
	if (ret < 0) {
		snprintf(reply, cap, "cannot record: %s", strerror(-ret));
		goto out;
	}
	ret = audit_flush(fs->audit);
	if (ret < 0) {
		snprintf(reply, cap, "recorded in the journal, not yet committed: %s",
			 strerror(-ret));
		goto out;
	}
	snprintf(reply, cap, "seq %" PRIu64, seq);
	goto out;
usage:
	snprintf(reply, cap, "usage: audit-admin PID OP OUTCOME [path=hex:HEX] DETAIL");
	ret = -EINVAL;
out:
	if (path) {
		crypt_wipe(path, AUDIT_PATH_MAX + 1);
		free(path);
	}
	return ret;
}

/* ---- live subject verbs ---------------------------------------------------- */

/* Next space-separated token of *args into out (cap bytes, NUL-terminated).
 * "hex:..." is decoded, so a field may hold any bytes but NUL.  0, or
 * -EINVAL (missing, too long, bad hex). */
static int ctl_token(const char **args, char *out, size_t cap)
{
	const char *p = *args, *end;
	size_t len;

	while (*p == ' ')
		p++;
	end = p + strcspn(p, " ");
	len = (size_t)(end - p);
	if (len == 0)
		return -EINVAL;
	if (len > 4 && strncmp(p, "hex:", 4) == 0) {
		size_t n = (len - 4) / 2;

		if ((len - 4) % 2 || n >= cap)
			return -EINVAL;
		for (size_t i = 0; i < n; i++) {
			unsigned v;

			if (sscanf(p + 4 + 2 * i, "%2x", &v) != 1 ||
			    !isxdigit((unsigned char)p[4 + 2 * i]) ||
			    !isxdigit((unsigned char)p[5 + 2 * i]) || v == 0)
				return -EINVAL;
			out[i] = (char)v;
		}
		out[n] = '\0';
	} else {
		if (len >= cap)
			return -EINVAL;
		memcpy(out, p, len);
		out[len] = '\0';
	}
	*args = *end ? end + 1 : end;
	return 0;
}

/*
 * "shred ID OPERATOR REASON" (each may be hex:...): shred a subject of the
 * mounted store now (ops_subject_shred).  Replies "ledger=N audit=S
 * files=F bytes=B cipher=C tree=0|1 wal=0|1"; the tool reads the
 * certificate back from the ledger entry N.  Errors as subjects_shred.
 */
static int ctl_shred(void *ctx, const char *args, char *reply, size_t cap)
{
	struct ops_fs *fs = ctx;
	struct subjects_certificate *cert = calloc(1, sizeof(*cert));
	char id[SUBJECTS_ID_MAX + 1], op[SUBJECTS_OPERATOR_MAX], *reason = NULL;
	int ret;

	reason = malloc(SUBJECTS_REASON_MAX);
	if (!cert || !reason) {
		ret = -ENOMEM;
		goto out;
	}
	if (ctl_token(&args, id, sizeof(id)) < 0 ||
	    ctl_token(&args, op, sizeof(op)) < 0 ||
	    ctl_token(&args, reason, SUBJECTS_REASON_MAX) < 0) {
		snprintf(reply, cap, "usage: shred ID OPERATOR REASON");
		ret = -EINVAL;
		goto out;
	}
	ret = ops_subject_shred(fs, id, reason, op, cert);
	if (cert->ledger_seq > 0)
		snprintf(reply, cap,
			 "ledger=%" PRId64 " audit=%" PRIu64 " files=%" PRIu64
			 " bytes=%" PRIu64 " cipher=%" PRIu64 " tree=%d wal=%d",
			 cert->ledger_seq, cert->audit_seq, cert->files, cert->bytes,
			 cert->cipher_bytes, cert->tree_removed, cert->wal_clean);
	else
		snprintf(reply, cap, "%s", strerror(-ret));
	/* -ENOENT would read as "no daemon" to the client. */
	if (ret == -ENOENT)
		ret = -ESRCH;
out:
	if (cert) {
		crypt_wipe(cert, sizeof(*cert));
		free(cert);
	}
	if (reason) {
		crypt_wipe(reason, SUBJECTS_REASON_MAX);
		free(reason);
	}
	crypt_wipe(id, sizeof(id));
	return ret;
}

/*
 * "subject-flag ID restrict|unrestrict|hold|release REASON" (ID may be
 * hex:...; REASON is the rest of the line): change a subject's flags on a
 * mounted store; effective for the next operation.  Replies "changed" or
 * "unchanged".  -ESRCH for an unknown subject, -ENOKEY shredded.
 */
static int ctl_subject_flag(void *ctx, const char *args, char *reply, size_t cap)
{
	static const struct {
		const char *verb;
		bool hold, on;
	} verbs[] = {
		{"restrict", false, true},
		{"unrestrict", false, false},
		{"hold", true, true},
		{"release", true, false},
	};
	struct ops_fs *fs = ctx;
	char id[SUBJECTS_ID_MAX + 1], verb[16];
	bool changed = false;
	int ret = -EINVAL;

	if (ctl_token(&args, id, sizeof(id)) == 0 &&
	    ctl_token(&args, verb, sizeof(verb)) == 0 && *args) {
		for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
			if (strcmp(verb, verbs[i].verb) != 0)
				continue;
			ret = ops_subject_flag(fs, (pid_t)control_peer_pid(), id, verb,
					       verbs[i].hold, verbs[i].on, args,
					       &changed);
			if (ret == 0)
				snprintf(reply, cap, "%s",
					 changed ? "changed" : "unchanged");
			else
				snprintf(reply, cap, "%s", strerror(-ret));
			if (ret == -ENOENT)
				ret = -ESRCH;
			crypt_wipe(id, sizeof(id));
			return ret;
		}
	}
	snprintf(reply, cap,
		 "usage: subject-flag ID restrict|unrestrict|hold|release REASON");
	crypt_wipe(id, sizeof(id));
	return ret;
}

/* "audit-flush": commit the records the writer still batches, so a tool
 * reading the log from the catalogue (a live export's audit.json) sees
 * everything done so far.  Replies "flushed". */
static int ctl_audit_flush(void *ctx, const char *args, char *reply, size_t cap)
{
	struct ops_fs *fs = ctx;
	int ret = audit_flush(fs->audit);

	(void)args;
	snprintf(reply, cap, "%s", ret == 0 ? "flushed" : strerror(-ret));
	return ret == -ENOENT ? -EIO : ret;
}

/* "holds-reload": the directory holds changed in the catalogue. */
static int ctl_holds_reload(void *ctx, const char *args, char *reply, size_t cap)
{
	int ret = ops_holds_reload(ctx);

	(void)args;
	snprintf(reply, cap, "%s", ret == 0 ? "holds reloaded" : strerror(-ret));
	return ret == -ENOENT ? -ESRCH : ret;
}

/*
 * "retention-sweep SYSTEM_US MAX_JUMP_US ACCEPT OPERATOR" (OPERATOR may be
 * hex:...): the live `custodian retention sweep` (ops_retention_sweep).
 * Replies "now=US files=N files_due=N files_erased=N files_held=N
 * files_unreadable=N subjects=N subjects_due=N subjects_shredded=N
 * subjects_held=N resumed=N bytes_erased=N errors=N next_due=US"; an
 * unaccepted forward clock jump is ERR ETIME with the reason.
 */
static int ctl_retention_sweep(void *ctx, const char *args, char *reply, size_t cap)
{
	struct ops_fs *fs = ctx;
	struct retention_stats st;
	char op[SUBJECTS_OPERATOR_MAX], msg[256];
	long long sys_us, jump_us;
	int accept, used = 0, ret;
	int64_t now;
	const char *rest;

	if (sscanf(args, "%lld %lld %d %n", &sys_us, &jump_us, &accept, &used) < 3 ||
	    used == 0 || sys_us <= 0 || jump_us < 0) {
		snprintf(reply, cap,
			 "usage: retention-sweep SYSTEM_US MAX_JUMP_US ACCEPT OPERATOR");
		return -EINVAL;
	}
	rest = args + used;
	if (ctl_token(&rest, op, sizeof(op)) < 0)
		snprintf(op, sizeof(op), "retention sweep");
	ret = ops_retention_sweep(fs, (pid_t)control_peer_pid(), sys_us, jump_us,
				  accept != 0, op, &st, &now, msg, sizeof(msg));
	if (ret < 0) {
		snprintf(reply, cap, "%s", msg[0] ? msg : strerror(-ret));
		return ret == -ENOENT ? -ESRCH : ret;
	}
	snprintf(reply, cap,
		 "now=%" PRId64 " files=%" PRIu64 " files_due=%" PRIu64
		 " files_erased=%" PRIu64 " files_held=%" PRIu64
		 " files_unreadable=%" PRIu64 " subjects=%" PRIu64
		 " subjects_due=%" PRIu64 " subjects_shredded=%" PRIu64
		 " subjects_held=%" PRIu64 " resumed=%" PRIu64 " bytes_erased=%" PRIu64
		 " errors=%" PRIu64 " next_due=%" PRId64,
		 now, st.files, st.files_due, st.files_erased, st.files_held,
		 st.files_unreadable, st.subjects, st.subjects_due, st.subjects_shredded,
		 st.subjects_held, st.resumed, st.bytes_erased, st.errors,
		 st.next_due_us);
	return 0;
}

/* The -o audit_* options into ao; prints the one-line failure. */
static int parse_audit_options(const struct cfs_opts *o, struct audit_options *ao)
{
	const struct {
		const char *key;
		const char *val;
	} kv[] = {
		{"audit_sync", o->audit_sync},
		{"audit_syslog", o->audit_syslog},
		{"audit_batch_ms", o->audit_batch_ms},
	};

	for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++) {
		if (!kv[i].val)
			continue;
		if (audit_option(ao, kv[i].key, kv[i].val) != 0) {
			fprintf(stderr, "custodianfs: %s: invalid value for -o %s: %s\n",
				o->store, kv[i].key, kv[i].val);
			return -EINVAL;
		}
	}
	return 0;
}

/* Opens the audit log (takes the journal lock, replays it); prints the
 * one-line failure.  Without it the daemon does not mount. */
static int open_audit(struct ops_fs *fs, struct store *st, const struct audit_options *ao,
		      const char *store)
{
	int ret = audit_open(st, ao, &fs->audit);

	if (ret == -EBUSY)
		fprintf(stderr,
			"custodianfs: %s: the audit log is in use by another process "
			"(already mounted?)\n",
			store);
	else if (ret == -EBADMSG)
		fprintf(stderr,
			"custodianfs: %s: the audit journal %s is damaged; move it aside "
			"to mount (custodian audit verify then names any gap)\n",
			store, AUDIT_JOURNAL_FILE);
	else if (ret < 0)
		fprintf(stderr, "custodianfs: %s: cannot open the audit log: %s\n", store,
			ret == -EROFS ? "the store is read-only" : strerror(-ret));
	return ret;
}

/* Loads the stored policy at mount; prints the one-line failure. */
static int load_policy(struct ops_fs *fs, const char *store)
{
	char msg[512];
	int ret = ops_policy_reload(fs, msg, sizeof(msg));

	if (ret == 0 || ret == -ENOENT)
		return 0;
	fprintf(stderr, "custodianfs: %s: %s\n", store, msg);
	return ret;
}

/* Creates STORE/control.sock; prints the one-line failure. */
static int start_control(struct control **out, struct ops_fs *fs, const char *store)
{
	struct control *c = NULL;
	int ret;

	*out = NULL;
	ret = control_new(&c);
	if (ret == 0)
		ret = control_register(c, "policy-reload", ctl_policy_reload, fs);
	if (ret == 0)
		ret = control_register(c, "audit-admin", ctl_audit_admin, fs);
	if (ret == 0)
		ret = control_register(c, "shred", ctl_shred, fs);
	if (ret == 0)
		ret = control_register(c, "subject-flag", ctl_subject_flag, fs);
	if (ret == 0)
		ret = control_register(c, "holds-reload", ctl_holds_reload, fs);
	if (ret == 0)
		ret = control_register(c, "audit-flush", ctl_audit_flush, fs);
	if (ret == 0)
		ret = control_register(c, "retention-sweep", ctl_retention_sweep, fs);
	if (ret == 0)
		ret = control_listen(c, store);
	if (ret == -EROFS) {
		/* A store on read-only media: no policy can be applied to it
		 * while mounted anyway. */
		control_close(c);
		return 0;
	}
	if (ret < 0) {
		if (ret == -EADDRINUSE)
			fprintf(stderr,
				"custodianfs: %s: already mounted (a daemon answers on "
				"%s/%s)\n",
				store, store, CONTROL_SOCKET);
		else
			fprintf(stderr, "custodianfs: %s: control socket %s: %s\n", store,
				CONTROL_SOCKET, strerror(-ret));
		control_close(c);
		return ret;
	}
	*out = c;
	return 0;
}

/* ---- read-ahead ---------------------------------------------------------- */

/*
 * Sets the read-ahead of the FUSE mount at mnt (a real path, resolved
 * before the mount: resolving it now would stat this very mount) to kb
 * KiB, through
 * /sys/class/bdi/MAJ:MIN/read_ahead_kb: a FUSE daemon may only lower what
 * the kernel proposes at INIT (128 KiB), and the kernel applies the INIT
 * reply after it, so this runs from the first request after INIT.  The
 * device number comes from /proc/self/mountinfo, not from stat(mnt), which
 * would be a request to this very daemon.  Best effort: a failure is
 * logged and the mount keeps the kernel's value.
 */
static void set_read_ahead(const char *mnt, unsigned kb)
{
	char *line = NULL, dev[32] = "", path[96];
	size_t cap = 0;
	FILE *f;

	f = fopen("/proc/self/mountinfo", "re");
	while (f && getline(&line, &cap, f) > 0) {
		char mdev[32], mp[PATH_MAX + 1], esc[PATH_MAX * 4 + 1];
		size_t j = 0;

		/* id parent MAJ:MIN root mountpoint ...; the last match wins. */
		if (sscanf(line, "%*s %*s %31s %*s %4096s", mdev, esc) != 2)
			continue;
		/* mountinfo escapes space, tab, newline and \ as \ooo. */
		for (size_t i = 0; esc[i] && j < PATH_MAX; i++) {
			unsigned v;

			if (esc[i] == '\\' && sscanf(esc + i + 1, "%3o", &v) == 1) {
				mp[j++] = (char)v;
				i += 3;
			} else {
				mp[j++] = esc[i];
			}
		}
		mp[j] = '\0';
		if (strcmp(mp, mnt) == 0)
			snprintf(dev, sizeof(dev), "%s", mdev);
	}
	if (f)
		fclose(f);
	free(line);
	if (!dev[0]) {
		fuse_log(FUSE_LOG_WARNING,
			 "custodianfs: read_ahead_kb: mount not found in mountinfo\n");
		return;
	}
	snprintf(path, sizeof(path), "/sys/class/bdi/%s/read_ahead_kb", dev);
	f = fopen(path, "we");
	if (f) {
		int bad = fprintf(f, "%u\n", kb) < 0;

		if (fclose(f) != 0 || bad)
			f = NULL;
	}
	if (!f)
		fuse_log(FUSE_LOG_WARNING, "custodianfs: read_ahead_kb: %s: %s\n", path,
			 strerror(errno));
}

/* What apply_read_ahead sets, for which mount point. */
struct read_ahead {
	char *mnt;   /* realpath of the mount point, NULL if unknown */
	unsigned kb; /* KiB */
};

/* ops_config.after_init: the kernel sets the read-ahead from the INIT
 * reply, so it is raised once that reply was applied. */
static void apply_read_ahead(void *arg)
{
	const struct read_ahead *ra = arg;

	if (ra->mnt)
		set_read_ahead(ra->mnt, ra->kb);
}

/* ---- main --------------------------------------------------------------- */

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct cfs_opts o = {
		.attr_timeout = CFS_DEFAULT_TIMEOUT,
		.entry_timeout = CFS_DEFAULT_TIMEOUT,
		.read_ahead_kb = CFS_READ_AHEAD_KB,
	};
	struct fuse_cmdline_opts copts;
	struct fuse_loop_config *lcfg = NULL;
	struct fuse_session *se = NULL;
	struct store *st = NULL;
	struct ops_config cfg;
	struct read_ahead ra = {NULL, 0};
	struct ops_fs fs;
	struct control *ctl = NULL;
	struct audit_options ao;
	const char *why = NULL;
	bool mounted = false;
	char detail[128];
	char *store_real = NULL;
	int notify_fd = -1;
	int status = 1;
	int ret;

	memset(&copts, 0, sizeof(copts));
	memset(&fs, 0, sizeof(fs));
	memset(&ao, 0, sizeof(ao));
	fuse_set_log_func(cfs_log);
	/* The kernel already applied the caller's umask to every mode. */
	umask(0);

	if (fuse_opt_parse(&args, &o, cfs_opt_spec, cfs_opt_proc) != 0 ||
	    fuse_parse_cmdline(&args, &copts) != 0) {
		fail(o.store,
		     setup_error[0] ? setup_error : "invalid arguments (see --help)");
		goto out_args;
	}
	log_debug = copts.debug;
	if (copts.show_help) {
		usage(argv[0]);
		status = 0;
		goto out_cmdline;
	}
	if (copts.show_version) {
		printf("custodianfs %s (FUSE library %s)\n", CFS_VERSION,
		       fuse_pkgversion());
		status = 0;
		goto out_cmdline;
	}
	if (!o.store || !copts.mountpoint) {
		fprintf(stderr,
			"custodianfs: usage: %s [options] STORE MOUNTPOINT "
			"(see --help)\n",
			argv[0]);
		goto out_cmdline;
	}
	if (!!o.passfile + !!o.extpass + !!o.keyfile > 1) {
		fprintf(stderr,
			"custodianfs: %s: use only one of --passfile, --extpass, "
			"--keyfile\n",
			o.store);
		goto out_cmdline;
	}
	if (o.attr_timeout < 0 || o.entry_timeout < 0) {
		fprintf(stderr, "custodianfs: %s: timeouts must not be negative\n",
			o.store);
		goto out_cmdline;
	}
	if (parse_audit_options(&o, &ao) < 0)
		goto out_cmdline;
	store_real = realpath(o.store, NULL);
	if (!store_real) {
		fprintf(stderr, "custodianfs: %s: %s\n", o.store,
			store_strerror(errno == ENOTDIR ? -ENOENT : -errno));
		goto out_cmdline;
	}
	if (!copts.foreground) {
		ret = daemon_fork(&notify_fd);
		if (ret < 0) {
			fprintf(stderr, "custodianfs: %s: fork: %s\n", o.store,
				strerror(-ret));
			goto out_real;
		}
	}

	if (crypt_init() != 0) {
		fprintf(stderr, "custodianfs: %s: cannot initialise libsodium\n",
			o.store);
		goto out_notify;
	}
	no_core_dumps();
	raise_fd_limit();
	/* Read-write even with -o ro: a read-only mount is still audited
	 * (the kernel refuses every change with EROFS). */
	ret = store_open(o.store, false, &st);
	if (ret < 0) {
		fprintf(stderr, "custodianfs: %s: %s\n", o.store, store_strerror(ret));
		goto out_notify;
	}
	ret = unlock_store(st, &o, &why);
	if (ret < 0) {
		fprintf(stderr, "custodianfs: %s: %s\n", o.store,
			why ? why : store_strerror(ret));
		goto out_store;
	}

	cfg = (struct ops_config){
		.attr_timeout = o.attr_timeout,
		.entry_timeout = o.entry_timeout,
		.writeback = o.writeback,
		.strict_walks = o.strict_walks,
		.debug = copts.debug,
		.after_init = o.read_ahead_kb > 0 ? apply_read_ahead : NULL,
		.after_init_arg = &ra,
	};
	ra.mnt = realpath(copts.mountpoint, NULL); /* not mounted yet */
	ra.kb = o.read_ahead_kb > 0 ? (unsigned)o.read_ahead_kb : 0;
	ret = ops_fs_init(&fs, st, &cfg);
	if (ret < 0) {
		fprintf(stderr, "custodianfs: %s: %s\n", o.store, store_strerror(ret));
		goto out_store;
	}
	ret = open_audit(&fs, st, &ao, o.store);
	if (ret < 0)
		goto out_fs;
	ret = ops_reserve_open(&fs);
	if (ret < 0)
		fuse_log(FUSE_LOG_WARNING,
			 "custodianfs: %s: no audit reserve (%s): on a full disk "
			 "reads will fail too (they cannot be recorded)\n",
			 o.store, strerror(-ret));
	ret = load_policy(&fs, o.store);
	if (ret < 0)
		goto out_fs;
	ret = ops_holds_reload(&fs);
	if (ret < 0) {
		fprintf(stderr, "custodianfs: %s: cannot read the legal holds: %s\n",
			o.store,
			ret == -EBADMSG ? "a hold was changed outside custodian"
					: strerror(-ret));
		goto out_fs;
	}
	if (!o.readonly) {
		ret = ops_reaper_start(&fs);
		if (ret < 0)
			fuse_log(FUSE_LOG_WARNING,
				 "custodianfs: %s: no background remover (%s): a live "
				 "shred removes the ciphertext before it returns\n",
				 o.store, strerror(-ret));
	}
	if (add_mount_options(&args, store_real, geteuid() == 0 && !o.no_allow_other) !=
	    0) {
		fprintf(stderr, "custodianfs: %s: %s\n", o.store, strerror(ENOMEM));
		goto out_fs;
	}
	se = fuse_session_new(&args, &ops_lowlevel, sizeof(ops_lowlevel), &fs);
	if (!se) {
		fprintf(stderr, "custodianfs: %s: %s\n", o.store,
			setup_error[0] ? setup_error : "cannot create the FUSE session");
		goto out_fs;
	}
	/* Before the control channel: its verbs invalidate kernel caches. */
	fs.se = se;
	ret = start_control(&ctl, &fs, store_real);
	if (ret < 0)
		goto out_session;
	if (fuse_set_signal_handlers(se) != 0) {
		fprintf(stderr, "custodianfs: %s: cannot install signal handlers\n",
			o.store);
		goto out_session;
	}
	if (fuse_session_mount(se, copts.mountpoint) != 0) {
		fprintf(stderr, "custodianfs: %s: %s\n", o.store,
			setup_error[0] ? setup_error : "cannot mount");
		goto out_signals;
	}

	mounted = true;
	/* Without it the kernel clears setuid bits itself, at the price of
	 * a GETATTR per chown: worth a warning, not a refusal. */
	ret = chan_attach(se, &fs.killpriv);
	if (ret < 0)
		fprintf(stderr,
			"custodianfs: %s: own /dev/fuse I/O unavailable (%s); "
			"the kernel clears setuid bits\n",
			o.store, strerror(-ret));
	snprintf(detail, sizeof(detail), "%s allow_other=%s audit_sync=%s policy=%s",
		 o.readonly ? "ro" : "rw",
		 geteuid() == 0 && !o.no_allow_other ? "yes" : "no",
		 ao.sync == AUDIT_SYNC_FULL ? "full" : "normal",
		 atomic_load(&fs.pol_on) ? "yes" : "no");
	ret = audit_admin(&fs, NULL, AUDIT_OP_MOUNT, 0, detail);
	if (ret < 0) {
		fprintf(stderr, "custodianfs: %s: cannot write the audit log: %s\n",
			o.store, strerror(-ret));
		mounted = false;
		fuse_session_unmount(se);
		goto out_signals;
	}

	/* Mounted: from here on, errors are logged, never exit()ed. */
	if (notify_fd >= 0) {
		daemon_ready(notify_fd);
		notify_fd = -1;
	} else {
		log_mode = CFS_LOG_STDERR;
		(void)chdir("/");
	}
	if (copts.singlethread) {
		ret = fuse_session_loop(se);
	} else {
		lcfg = fuse_loop_cfg_create();
		if (!lcfg) {
			fuse_log(FUSE_LOG_ERR, "custodianfs: out of memory\n");
			ret = -ENOMEM;
		} else {
			fuse_loop_cfg_set_clone_fd(lcfg, 1);
			fuse_loop_cfg_set_idle_threads(lcfg,
						       copts.max_idle_threads == UINT_MAX
							       ? CFS_IDLE_THREADS
							       : copts.max_idle_threads);
			fuse_loop_cfg_set_max_threads(lcfg,
						      copts.max_threads == CFS_MIN_THREADS
							      ? default_max_threads()
							      : copts.max_threads);
			ret = fuse_session_loop_mt(se, lcfg);
			fuse_loop_cfg_destroy(lcfg);
		}
	}
	/* A signal number means SIGTERM/SIGINT/SIGHUP: a clean unmount. */
	status = ret < 0 ? 1 : 0;
	if (ret < 0)
		fuse_log(FUSE_LOG_ERR, "custodianfs: session loop failed: %s\n",
			 strerror(-ret));

	/* No verb may use the session (cache invalidation) once it ends. */
	control_close(ctl);
	ctl = NULL;
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
out_fs:
	/* No verb may run against a file system being torn down. */
	control_close(ctl);
	if (mounted) {
		ops_audit_open_handles(&fs);
		ret = audit_admin(&fs, NULL, AUDIT_OP_UNMOUNT, 0,
				  status == 0 ? "clean" : "session loop failed");
		if (ret < 0)
			fuse_log(FUSE_LOG_ERR,
				 "custodianfs: the unmount could not be recorded: %s\n",
				 strerror(-ret));
	}
	/* Commits what the journal holds and releases its lock. */
	ops_reaper_stop(&fs);
	audit_close(fs.audit);
	fs.audit = NULL;
	ops_fs_destroy(&fs);
out_store:
	store_close(st);
out_notify:
	if (notify_fd >= 0)
		close(notify_fd); /* EOF: the parent reports our exit status */
out_real:
	free(store_real);
	free(ra.mnt);
out_cmdline:
	free(copts.mountpoint);
out_args:
	fuse_opt_free_args(&args);
	free(o.store);
	free(o.passfile);
	free(o.extpass);
	free(o.keyfile);
	free(o.audit_sync);
	free(o.audit_syslog);
	free(o.audit_batch_ms);
	if (log_mode == CFS_LOG_SYSLOG)
		closelog();
	return status;
}
