#!/bin/sh
# tests/demo.sh [stop] — `make demo` / `make demo-stop`.
#
# Creates a demo store in <repo>/demo/store (passphrase in demo/passphrase,
# mode 0600), mounts it at demo/mnt (allow_other), applies a demo policy
# (demo/policy.ini: every /customers/* folder is a data subject with its
# own key), writes a few sample customer records and shows them both ways:
# in plain text through the mount, and encrypted in the store.  Then the
# admin side: the subjects, the audit log, a live crypto-shred of one
# customer with its erasure certificate, and finally
# policy/examples/contact-centre.ini applied to the running mount, which
# refuses root (the example grants roles, not root).
# `tests/demo.sh stop` unmounts and stops the daemon.  Running it twice
# works: it stops a previous demo and starts from a fresh store.
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${CUSTODIAN_BUILD:-$REPO/build}
DEMO=${CUSTODIAN_DEMO_DIR:-$REPO/demo}
STORE=$DEMO/store
MNT=$DEMO/mnt
PASS=$DEMO/passphrase
PIDFILE=$DEMO/daemon.pid
LOG=$DEMO/daemon.log
POLICY=$REPO/policy/examples/contact-centre.ini

say() { printf '%s\n' "$*"; }
hr() { printf '\n--- %s\n' "$*"; }

is_mounted() {
	awk -v m="$MNT" '$2 == m { f = 1 } END { exit !f }' /proc/self/mounts 2>/dev/null
}

stop() {
	if is_mounted; then
		fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -u -z "$MNT"
	fi
	if [ -f "$PIDFILE" ]; then
		pid=$(cat "$PIDFILE")
		i=0
		while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
			kill "$pid" 2>/dev/null || true
			sleep 1
			kill -9 "$pid" 2>/dev/null || true
		fi
		rm -f "$PIDFILE"
	fi
	if is_mounted; then fusermount3 -u -z "$MNT" 2>/dev/null || true; fi
}

mount_demo() {
	: >"$LOG"
	# -f under setsid, so the pid is known and a terminal's ^C cannot reach it
	setsid "$BUILD/custodianfs" "$STORE" "$MNT" --passfile "$PASS" -f \
		-o allow_other >>"$LOG" 2>&1 </dev/null &
	echo $! >"$PIDFILE"
	i=0
	while ! is_mounted; do
		if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
			rm -f "$PIDFILE"
			return 1
		fi
		i=$((i + 1))
		[ $i -lt 300 ] || { stop; return 1; }
		sleep 0.05
	done
}

if [ "${1:-}" = stop ]; then
	stop
	say "demo stopped (store kept in $STORE; rm -rf $DEMO to start afresh)"
	exit 0
fi

for b in custodian custodianfs; do
	[ -x "$BUILD/$b" ] || { say "demo: $BUILD/$b is not built (run make)" >&2; exit 1; }
done

stop
mkdir -p "$DEMO" "$MNT"
chmod 0755 "$DEMO" "$MNT"

if [ ! -s "$PASS" ]; then
	umask 077
	printf 'demo passphrase %s\n' "$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')" >"$PASS"
	umask 022
fi
chmod 0600 "$PASS"

hr "store"
# Recreated on every run: the demo applies a policy that locks root out, so
# a fresh store is the simple way to make a second run behave like the first.
rm -rf "$STORE"
say "creating a DEMO store $STORE; its passphrase is in $PASS (mode 0600)."
say "This is a demo: a real store's passphrase does not sit beside it."
if ! out=$("$BUILD/custodian" init "$STORE" --passfile "$PASS" 2>&1); then
	printf 'demo: %s\n' "$out" >&2
	exit 1
fi
printf '%s\n' "$out" | sed 's/^/  /'
say "  (the recovery key above is shown once; a real administrator keeps it offline)"

hr "mount"
if ! is_mounted; then
	if ! mount_demo; then
		say "demo: custodianfs did not mount:" >&2
		tail -5 "$LOG" >&2
		exit 1
	fi
fi
grep " $MNT " /proc/self/mounts | sed 's/^/  /'

hr "demo policy: $DEMO/policy.ini"
cat >"$DEMO/policy.ini" <<'EOF_POLICY'
# The demo's policy: root plays every role so one terminal can show it all.
# policy/examples/contact-centre.ini is the realistic one (applied at the end).
[/]
list = root
read = root
write = root
create = root
delete = root
admin = root
purpose = Customer service by telephone and e-mail (demo)
categories = contact details, case notes

# One folder per customer; each is a data subject with its own key.
[/customers/*]
subject = yes
retain_max = 10y
audit = reads
EOF_POLICY
"$BUILD/custodian" policy apply "$STORE" "$DEMO/policy.ini" --passfile "$PASS" --yes 2>&1 |
	tail -1 | sed 's/^/  /'

hr "sample customer records (written through the mount)"
write() { # path text
	mkdir -p "$(dirname "$MNT/$1")" 2>/dev/null || true
	if printf '%s\n' "$2" >"$MNT/$1" 2>/dev/null; then
		say "  wrote /$1"
	else
		say "  could not write /$1 (refused by the policy?)"
	fi
}
write "customers/C-10042/contract.txt" "Customer C-10042, Jan Kowalski, ul. Długa 5, Gdańsk. Contract 2024-117, signed 2024-03-01."
write "customers/C-10042/calls/2024-05-02 call note.txt" "Called about the invoice of April; promised a callback on Friday."
write "customers/C-10077/complaint.txt" "Customer C-10077, Maria Silva: delivery late twice; refund of 35 EUR agreed."
write "customers/C-10077/id-scan.txt" "(scanned identity document would be here)"
write "shared/scripts/greeting.txt" "Good morning, you are speaking with the customer care team."

hr "what a user sees: ls -lR $MNT"
ls -lR "$MNT" 2>&1 | sed 's/^/  /' | head -40

hr "a file through the mount: customers/C-10042/contract.txt"
cat "$MNT/customers/C-10042/contract.txt" 2>&1 | sed 's/^/  /'

hr "the same tree in the store: find $STORE/tree (encrypted names)"
(cd "$STORE" && find tree -maxdepth 4 | head -25) | sed 's/^/  /'

hr "head of one ciphertext file"
f=$(find "$STORE/tree" -type f ! -name '.*' -size +0 -printf '%s %p\n' 2>/dev/null |
	sort -n | tail -1 | cut -d' ' -f2-)
if [ -n "$f" ]; then
	say "  ${f#"$STORE"/}"
	if command -v hexdump >/dev/null; then
		hexdump -C "$f" | head -8 | sed 's/^/  /'
	else
		od -A x -t x1z "$f" | head -8 | sed 's/^/  /'
	fi
	if grep -rqa "Kowalski" "$STORE"; then
		say "  !! plaintext found in the store"
	else
		say "  (grep -r Kowalski $STORE finds nothing: content and names are encrypted)"
	fi
fi

hr "data subjects: custodian subjects STORE"
"$BUILD/custodian" subjects "$STORE" --passfile "$PASS" 2>&1 | sed 's/^/  /'

hr "who read what: custodian audit log STORE --op open (last 5)"
"$BUILD/custodian" audit log "$STORE" --passfile "$PASS" --op open 2>&1 | tail -5 | sed 's/^/  /'

hr "erasure request for C-10077: custodian shred (live, through the daemon)"
"$BUILD/custodian" shred "$STORE" C-10077 --reason "erasure request by e-mail, ticket 4711" \
	--yes --passfile "$PASS" 2>&1 | sed 's/^/  /'
say "  \$ ls $MNT/customers"
ls "$MNT/customers" 2>&1 | sed 's/^/  /'
if grep -rqa "Silva" "$STORE"; then
	say "  !! plaintext of the shredded customer found in the store"
else
	say "  (grep -r Silva $STORE finds nothing; old copies of the ciphertext are"
	say "   unreadable too: the only key is gone)"
fi

hr "policy: $POLICY"
if [ ! -f "$POLICY" ]; then
	say "no $POLICY yet: skipped (mode bits only)"
elif ! "$BUILD/custodian" policy --help >/dev/null 2>&1; then
	say "this build's custodian has no 'policy' verb yet: skipped"
elif out=$("$BUILD/custodian" policy apply "$STORE" "$POLICY" --passfile "$PASS" --yes 2>&1); then
	printf '%s\n' "$out" | tail -1 | sed 's/^/  /'
	say "applied while mounted; the daemon enforces it from the next operation."
	say "The example grants roles (groups custodian-agents, ...), not root, so now:"
	say "  \$ ls $MNT/customers"
	if ls "$MNT/customers" >"$DEMO/ls.out" 2>&1; then
		sed 's/^/  /' "$DEMO/ls.out"
		say "  (not refused: this build's daemon does not enforce the policy yet)"
	else
		sed 's/^/  /' "$DEMO/ls.out"
	fi
	rm -f "$DEMO/ls.out"
	say "  \$ custodian policy explain STORE /customers/C-10042 root"
	"$BUILD/custodian" policy explain "$STORE" /customers/C-10042 root --passfile "$PASS" 2>&1 |
		grep -v 'warning: unknown' | head -12 | sed 's/^/  /' || true
	say "Members of the groups named in the policy get in through the same mount"
	say "(the groups do not exist here unless you create them with groupadd)."
else
	say "policy apply did not work here, skipped:"
	printf '%s\n' "$out" | tail -3 | sed 's/^/  /'
fi

hr "done"
say "The demo store stays mounted at $MNT (daemon log: $LOG)."
say "Unmount with:  make demo-stop     (or: fusermount3 -u $MNT)"
