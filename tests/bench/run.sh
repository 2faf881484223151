#!/bin/sh
# tests/bench/run.sh BUILD_DIR — `make bench`: custodian against its peers.
#
# One run measures, on the same disk and workload: the plain backing
# directory, libfuse's passthrough_ll example (FUSE, no crypto: the ceiling,
# built here from /usr/share/doc/libfuse3-dev/examples), gocryptfs, securefs
# and custodian.  Workloads: sequential write and read of a large file (dd,
# MB/s, read cold), untar / ls -lR / sha256 of every file / rm -rf of a tree
# of the files under /usr/include (seconds; ls and hash cold), fio 4 KiB
# random read and write (psync, buffered, IOPS), and the FUSE daemon's peak
# RSS.  "Cold" means: unmount, drop the page cache, mount again.
#
# Each column, each round, keeps its backing store on a file system of its
# own, made fresh for it: ext4 as mkfs.ext4 makes it (with a journal, as on
# a real file server), on a loop device over a sparse file in the scratch
# dir, in direct I/O mode (no second page cache: as fast as the disk under
# it, where a buffered loop device wrote at a fifth of that).  So every
# column starts from the same state.  On one shared scratch file system
# the column after another's rm -rf paid for it: ext4 without a journal
# (this machine's root) skips every inode freed in the last 35 s (5 min
# while its inode table block is dirty) when it allocates one.
# BENCH_DISK=dir puts every store in the scratch dir instead (also the
# fallback when a loop device cannot be set up).  BENCH_DISK=ram keeps the
# ext4 images in /dev/shm: no disk under any column, so the rows show what
# each file system costs in CPU and round trips alone (the shared disk of
# these VMs swings between runs: the plain column once wrote 1,223, 389
# and 389 MB/s in three rounds of one run).
#
# Prints an aligned table and writes it as Markdown to BUILD_DIR/bench/
# results.md.  Ratio columns: for times (lower is better) peer/custodian,
# for rates custodian/peer, so > 1 always means custodian is better.
#
# Sizes (env, for a quick run): BENCH_SEQ_MB (1024), BENCH_FIO_MB (256),
# BENCH_FIO_SECS (20), BENCH_TAR_FILES (0 = all of /usr/include),
# BENCH_FS (the columns to run), BENCH_DISK (ext4, ram or dir, above),
# BENCH_WORK (scratch dir on a real disk, default
# /var/tmp/custodian-bench.PID).  Every mount is undone on exit.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -u -o pipefail

BUILD=$(realpath "${1:?usage: run.sh BUILD_DIR}")
OUT=$BUILD/bench
SEQ_MB=${BENCH_SEQ_MB:-1024}
FIO_MB=${BENCH_FIO_MB:-256}
FIO_SECS=${BENCH_FIO_SECS:-20}
TAR_FILES=${BENCH_TAR_FILES:-0}
ROUNDS=${BENCH_ROUNDS:-3}
FSLIST=${BENCH_FS:-plain passthrough gocryptfs securefs custodian}
WORK=${BENCH_WORK:-/var/tmp/custodian-bench.$$}
DISK=${BENCH_DISK:-ext4}
# Where the ext4 images live.
IMGDIR=$WORK
[ "$DISK" = ram ] && IMGDIR=/dev/shm/custodian-bench.$$
PY=/usr/bin/python3
PASS="bench passphrase (not secret)"
EXAMPLES=/usr/share/doc/libfuse3-dev/examples

mkdir -p "$OUT/logs" "$WORK"
RESULTS=$OUT/results.tsv
: >"$RESULTS"
declare -A PID MNT BASE LOOP
DROP_OK=1

log() { printf '%s\n' "$*" >&2; }

# --- cleanup: unmount everything under WORK, stop our daemons ---------------
cleanup() {
	local m p
	for m in $(awk -v w="$WORK/" 'index($2, w) == 1 { print $2 }' /proc/self/mounts); do
		fusermount3 -u "$m" 2>/dev/null || fusermount3 -u -z "$m" 2>/dev/null
	done
	for p in "${PID[@]}"; do
		[ -n "$p" ] || continue
		kill "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	for m in $(awk -v w="$WORK/" 'index($2, w) == 1 && $3 ~ /^fuse/ { print $2 }' /proc/self/mounts); do
		fusermount3 -u -z "$m" 2>/dev/null
	done
	for m in "${!BASE[@]}"; do
		disk_drop "$m"
	done
	if ! awk -v w="$WORK/" 'index($2, w) == 1 { f = 1 } END { exit !f }' /proc/self/mounts; then
		rm -rf "$WORK"
	fi
	[ "$IMGDIR" = "$WORK" ] || rmdir "$IMGDIR" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
ROUND=1
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$ROUND" >>"$RESULTS"; }

drop_caches() {
	sync
	if [ "$DROP_OK" = 1 ] && ! echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then
		DROP_OK=0
		log "warning: cannot drop the page cache; cold rows are warm for plain"
	fi
}

is_mounted() { awk -v m="$1" '$2 == m { f = 1 } END { exit !f }' /proc/self/mounts; }

wait_mounted() { # name mnt
	local i
	for i in $(seq 1 400); do
		is_mounted "$2" && return 0
		if [ -n "${PID[$1]:-}" ] && ! kill -0 "${PID[$1]}" 2>/dev/null; then
			log "$1: daemon exited before mounting:"
			tail -5 "$OUT/logs/$1.log" >&2
			return 1
		fi
		sleep 0.05
	done
	log "$1: not mounted after 20 s"
	return 1
}

# --- the file systems ---------------------------------------------------------
# fs_create NAME: make its backing store; fs_mount NAME: mount (foreground
# daemon in the background, pid in PID[NAME]) and set MNT[NAME];
# fs_umount NAME.

build_passthrough() {
	[ -x "$OUT/passthrough_ll" ] && return 0
	local src=$EXAMPLES/passthrough_ll.c
	[ -f "$src" ] || src=$EXAMPLES/passthrough_ll.c.gz
	mkdir -p "$OUT/pt-src"
	for f in passthrough_ll.c passthrough_helpers.h; do
		if [ -f "$EXAMPLES/$f" ]; then cp "$EXAMPLES/$f" "$OUT/pt-src/"
		elif [ -f "$EXAMPLES/$f.gz" ]; then zcat "$EXAMPLES/$f.gz" >"$OUT/pt-src/$f"
		else log "missing $EXAMPLES/$f"; return 1; fi
	done
	cc -O2 -Wall -o "$OUT/passthrough_ll" "$OUT/pt-src/passthrough_ll.c" \
		$(pkg-config --cflags --libs fuse3) -lpthread
}

# disk_make NAME: BASE[NAME] is where its backing store goes: a fresh ext4
# mounted at WORK/NAME.disk, or WORK itself.  disk_drop NAME undoes it:
# the whole file system goes, or (in WORK) the store NAME left there.
disk_make() {
	local n=$1 img=$IMGDIR/$1.img d=$WORK/$1.disk
	BASE[$n]=$WORK
	[ "$DISK" = ext4 ] || [ "$DISK" = ram ] || return 0
	disk_drop "$n"
	mkdir -p "$d" "$IMGDIR"
	# Room for the large file, the fio file and the tree, twice over.
	# Inode tables and journal are written now (not lazily by a kernel
	# thread during the run).
	if truncate -s "$((2 * (SEQ_MB + FIO_MB) + 2048))M" "$img" &&
		mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$img" \
			>>"$OUT/logs/$n.log" 2>&1 &&
		LOOP[$n]=$(losetup --direct-io=on -f --show "$img" 2>>"$OUT/logs/$n.log") &&
		mount "${LOOP[$n]}" "$d" >>"$OUT/logs/$n.log" 2>&1; then
		BASE[$n]=$d
		return 0
	fi
	disk_drop "$n"
	log "cannot make an ext4 on a loop device (see $OUT/logs/$n.log): stores go in $WORK"
	DISK=dir
}

disk_drop() {
	local d=$WORK/$1.disk
	is_mounted "$d" && { umount "$d" 2>/dev/null || umount -l "$d"; }
	[ -n "${LOOP[$1]:-}" ] && losetup -d "${LOOP[$1]}" 2>/dev/null
	LOOP[$1]=
	rm -rf "$IMGDIR/$1.img" "$WORK/$1.src" "$WORK/$1.cipher" "$WORK/$1.store"
	BASE[$1]=$WORK
}

fs_create() {
	local n=$1 b
	disk_make "$n"
	b=${BASE[$n]}
	MNT[$n]=$WORK/$n.mnt
	[ "$n" = plain ] && MNT[$n]=$b/$n.mnt
	mkdir -p "${MNT[$n]}"
	case $n in
	plain) ;;
	passthrough)
		build_passthrough && mkdir -p "$b/$n.src" ;;
	gocryptfs)
		printf '%s\n' "$PASS" >"$WORK/pass" && mkdir -p "$b/$n.cipher" &&
			gocryptfs -init -q -scryptn 10 -passfile "$WORK/pass" "$b/$n.cipher" \
				>>"$OUT/logs/$n.log" 2>&1 ;;
	securefs)
		mkdir -p "$b/$n.cipher" &&
			securefs create --pass "$PASS" -r 1 "$b/$n.cipher" >>"$OUT/logs/$n.log" 2>&1 ||
			securefs create --pass "$PASS" "$b/$n.cipher" >>"$OUT/logs/$n.log" 2>&1 ;;
	custodian)
		[ -x "$BUILD/custodianfs" ] && [ -x "$BUILD/custodian" ] || {
			log "custodian: $BUILD/custodianfs not built"
			return 1
		}
		printf '%s' "$PASS" >"$WORK/cpass" && chmod 600 "$WORK/cpass" &&
			"$BUILD/custodian" init "$b/$n.store" --passfile "$WORK/cpass" \
				--kdf-ops 1 --kdf-mem 8 \
				>>"$OUT/logs/$n.log" 2>&1 ;;
	esac
}

fs_mount() {
	local n=$1 m=${MNT[$1]} b=${BASE[$1]}
	case $n in
	plain) return 0 ;;
	passthrough)
		"$OUT/passthrough_ll" -f -o "source=$b/$n.src" "$m" >>"$OUT/logs/$n.log" 2>&1 & ;;
	gocryptfs)
		gocryptfs -f -q -passfile "$WORK/pass" "$b/$n.cipher" "$m" >>"$OUT/logs/$n.log" 2>&1 & ;;
	securefs)
		securefs mount --pass "$PASS" "$b/$n.cipher" "$m" >>"$OUT/logs/$n.log" 2>&1 & ;;
	custodian)
		"$BUILD/custodianfs" "$b/$n.store" "$m" --passfile "$WORK/cpass" -f \
			>>"$OUT/logs/$n.log" 2>&1 & ;;
	esac
	PID[$n]=$!
	wait_mounted "$n" "$m"
}

fs_umount() {
	local n=$1 m=${MNT[$1]} i
	[ "$n" = plain ] && return 0
	is_mounted "$m" && { fusermount3 -u "$m" 2>/dev/null || fusermount3 -u -z "$m"; }
	if [ -n "${PID[$n]:-}" ]; then
		for i in $(seq 1 200); do
			kill -0 "${PID[$n]}" 2>/dev/null || break
			sleep 0.05
		done
		kill "${PID[$n]}" 2>/dev/null
		wait "${PID[$n]}" 2>/dev/null
		PID[$n]=
	fi
}

cold() { # unmount, drop caches, mount
	fs_umount "$1"
	drop_caches
	fs_mount "$1"
}

peak_rss_mib() { # the daemon's VmHWM
	local p=${PID[$1]:-}
	[ -n "$p" ] || return 0
	awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$p/status" 2>/dev/null
}

# The row is memory while streaming (issue 2: "resident while streaming a
# 1 GiB file"), so the peak starts at the stream: unlocking a store
# (Argon2id, scrypt) has its own peak, set by the KDF's memory parameter,
# before any data moves.  Writing 5 to clear_refs resets VmHWM to VmRSS.
rss_reset() {
	local p=${PID[$1]:-}
	[ -n "$p" ] || return 0
	echo 5 >"/proc/$p/clear_refs" 2>/dev/null || true
}

# --- the workloads --------------------------------------------------------------

make_tarball() {
	TARBALL=$WORK/tree.tar
	[ -f "$TARBALL" ] && return 0
	if [ "$TAR_FILES" -gt 0 ] 2>/dev/null; then
		(cd / && find usr/include -type f | sort | head -n "$TAR_FILES") >"$WORK/tree.list"
	else
		(cd / && find usr/include -type f | sort) >"$WORK/tree.list"
	fi
	# An archive of a tree holds its directories too, as `tar -cf x.tar dir`
	# makes it: GNU tar (as root) then creates each directory 0700 and gives
	# it its mode at the end, which is the path real archives take.
	awk '{ d = $0; while (sub("/[^/]*$", "", d)) print d }' "$WORK/tree.list" |
		sort -u | cat - "$WORK/tree.list" | sort >"$WORK/tree.members"
	tar -C / --no-recursion -cf "$TARBALL" -T "$WORK/tree.members"
	NFILES=$(wc -l <"$WORK/tree.list")
	TARMB=$(du -m "$TARBALL" | cut -f1)
}

fio_iops() { # name rw dir
	local json=$OUT/logs/fio-$1-$2.json
	fio --name="$2" --filename="$3/fio.dat" --size="${FIO_MB}M" --bs=4k \
		--ioengine=psync --direct=0 --rw="$2" --runtime="$FIO_SECS" --time_based \
		--output-format=json --output="$json" >>"$OUT/logs/$1.log" 2>&1 || return 1
	$PY -c 'import json,sys; j=json.load(open(sys.argv[1]))["jobs"][0]; k=sys.argv[2]
print("%.0f" % (j["read"]["iops"] if k == "randread" else j["write"]["iops"]))' "$json" "$2"
}

bench_one() {
	local n=$1 t s v rss
	log "== $n"
	fs_create "$n" || { log "$n: setup failed (see $OUT/logs/$n.log)"; return 1; }
	fs_mount "$n" || return 1
	t=${MNT[$n]}

	# sequential write, then read cold
	rss_reset "$n"
	s=$(now)
	dd if=/dev/zero of="$t/seq" bs=1M count="$SEQ_MB" conv=fsync status=none || return 1
	v=$(elapsed "$s")
	record "$n" seqwrite "$(awk -v m="$SEQ_MB" -v s="$v" 'BEGIN { printf "%.0f", m * 1.048576 / s }')"
	rss=$(peak_rss_mib "$n")
	cold "$n" || return 1
	rss_reset "$n"
	s=$(now)
	dd if="$t/seq" of=/dev/null bs=1M status=none || return 1
	v=$(elapsed "$s")
	record "$n" seqread "$(awk -v m="$SEQ_MB" -v s="$v" 'BEGIN { printf "%.0f", m * 1.048576 / s }')"
	v=$(peak_rss_mib "$n")
	[ -n "$v" ] && record "$n" rss "$(awk -v a="${rss:-0}" -v b="$v" 'BEGIN { print (a > b ? a : b) }')"
	rm -f "$t/seq"

	# small files
	mkdir -p "$t/tree"
	drop_caches
	s=$(now)
	tar -C "$t/tree" -xf "$TARBALL" || return 1
	record "$n" untar "$(elapsed "$s")"
	cold "$n" || return 1
	s=$(now)
	ls -lR "$t/tree" >/dev/null || return 1
	record "$n" lslr "$(elapsed "$s")"
	cold "$n" || return 1
	s=$(now)
	(cd "$t/tree" && find . -type f -print0 | xargs -0 sha256sum >/dev/null) || return 1
	record "$n" hash "$(elapsed "$s")"
	s=$(now)
	rm -rf "$t/tree" || return 1
	record "$n" rmrf "$(elapsed "$s")"

	# fio: lay the file out, then read it cold, then write
	fio --name=layout --filename="$t/fio.dat" --size="${FIO_MB}M" --bs=1M --rw=write \
		--ioengine=psync --end_fsync=1 >>"$OUT/logs/$n.log" 2>&1 || return 1
	cold "$n" || return 1
	v=$(fio_iops "$n" randread "$t") && record "$n" randread "$v"
	v=$(fio_iops "$n" randwrite "$t") && record "$n" randwrite "$v"
	rm -f "$t/fio.dat"
	fs_umount "$n"
}

# --- main ----------------------------------------------------------------------

for tool in fio dd tar sha256sum fusermount3 cc pkg-config; do
	command -v "$tool" >/dev/null || { log "missing $tool (make deps-bench)"; exit 1; }
done
make_tarball
NFILES=$(wc -l <"$WORK/tree.list")
TARMB=$(du -m "$TARBALL" | cut -f1)
log "workload: seq ${SEQ_MB} MiB; tree of $NFILES files (${TARMB} MB tar); fio ${FIO_MB} MiB x ${FIO_SECS}s"
log "scratch: $WORK ($(df -h --output=source,fstype "$WORK" | tail -1)); stores: $(case $DISK in ext4) echo "a fresh ext4 (loop) per column and round" ;; ram) echo "a fresh ext4 (loop over /dev/shm) per column and round" ;; *) echo "in the scratch dir" ;; esac)"

# Rounds: each round runs every column on a fresh store, in an order
# rotated by one each round (so no column always runs right after another
# one's rm -rf: ext4 without a journal skips inodes freed in the last
# minute when it allocates), and the table shows each cell's median.
read -r -a COLS <<<"$FSLIST"
for ROUND in $(seq 1 "$ROUNDS"); do
	k=$(( (ROUND - 1) % ${#COLS[@]} ))
	ORDER=("${COLS[@]:$k}" "${COLS[@]:0:$k}")
	log "== round $ROUND of $ROUNDS: ${ORDER[*]}"
	for n in "${ORDER[@]}"; do
		bench_one "$n" || {
			log "$n: run failed; its column is incomplete (log: $OUT/logs/$n.log)"
			fs_umount "$n" 2>/dev/null
		}
		disk_drop "$n"
		sync
	done
done

$PY - "$RESULTS" "$OUT/results.md" "$SEQ_MB" "$NFILES" "$FIO_MB" "$FIO_SECS" "$ROUNDS" "$DISK" <<'EOF'
import sys, platform, os, time, statistics
res, md_path, seq_mb, nfiles, fio_mb, fio_secs, nrounds, disk = sys.argv[1:9]
per_round = {}  # (fs, metric) -> {round: value}
for line in open(res):
    fs, metric, v, rnd = line.rstrip("\n").split("\t")
    try:
        per_round.setdefault((fs, metric), {})[rnd] = float(v)
    except ValueError:
        pass
vals = {k: statistics.median(v.values()) for k, v in per_round.items()}
rows = [  # metric, label, higher is better
    ("seqwrite", f"seq write {seq_mb} MiB (MB/s)", True),
    ("seqread", f"seq read {seq_mb} MiB, cold (MB/s)", True),
    ("untar", f"untar {nfiles} files (s)", False),
    ("lslr", "ls -lR, cold (s)", False),
    ("hash", "sha256 all files, cold (s)", False),
    ("rmrf", "rm -rf (s)", False),
    ("randread", f"fio 4k randread {fio_mb} MiB {fio_secs}s (IOPS)", True),
    ("randwrite", f"fio 4k randwrite {fio_mb} MiB {fio_secs}s (IOPS)", True),
    ("rss", "daemon peak RSS (MiB)", False),
]
cols = ["plain", "passthrough", "gocryptfs", "securefs", "custodian"]
peers = ["gocryptfs", "securefs"]

def fmt(v):
    if v is None:
        return "-"
    return f"{v:.0f}" if v >= 100 else f"{v:.2f}"

def ratio(c, p, higher):
    if c is None or p is None or c == 0 or p == 0:
        return None
    return c / p if higher else p / c

table = []
for key, label, higher in rows:
    r = [label] + [fmt(vals.get((c, key))) for c in cols]
    pv = [vals[(p, key)] for p in peers if (p, key) in vals]
    best = (max(pv) if higher else min(pv)) if pv else None
    c = vals.get(("custodian", key))
    rb = ratio(c, best, higher)
    rp = ratio(c, vals.get(("passthrough", key)), higher)
    r.append(f"{rb:.2f}x" if rb else "-")
    r.append(f"{rp:.2f}x" if rp else "-")
    # The same ratio round by round (each round against that round's best
    # peer): how far one run could be off.
    rr = []
    for rnd in sorted(per_round.get(("custodian", key), {})):
        cv = per_round[("custodian", key)][rnd]
        pr = [per_round[(p, key)][rnd] for p in peers if rnd in per_round.get((p, key), {})]
        if pr:
            x = ratio(cv, max(pr) if higher else min(pr), higher)
            if x:
                rr.append(x)
    r.append(f"{min(rr):.2f}-{max(rr):.2f}x" if len(rr) > 1 else "-")
    table.append(r)
head = ["workload"] + cols + ["custodian/best-encrypted", "custodian/passthrough",
                              "per round"]
w = [max(len(str(x[i])) for x in [head] + table) for i in range(len(head))]
lines = ["  ".join(str(x[i]).ljust(w[i]) if i == 0 else str(x[i]).rjust(w[i])
                   for i in range(len(head))) for x in [head] + table]
print("\n".join(lines))
with open(md_path, "w") as f:
    f.write(f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on "
            f"{platform.node()}, {os.cpu_count()} CPUs, kernel {platform.release()}; "
            + {"ext4": "each store on a fresh ext4 (loop device) per column and round",
               "ram": "each store on a fresh ext4 (loop device over /dev/shm: no disk) "
                      "per column and round"}.get(disk, "every store in the scratch directory")
            + ".\n\n")
    f.write("| " + " | ".join(head) + " |\n")
    f.write("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|\n")
    for r in table:
        f.write("| " + " | ".join(r) + " |\n")
    f.write(f"\nMedians of {nrounds} rounds (column order rotated each round). "
            "Ratios: > 1 means custodian is better (times: peer/custodian; "
            "rates: custodian/peer); \"per round\": the lowest and highest "
            "of the per-round ratios to that round's best encrypted peer.\n")
print(f"\n(written to {md_path})")
EOF
