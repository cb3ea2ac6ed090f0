#!/usr/bin/env bash
# Single-node Slurm (+ slurmdbd/MariaDB accounting) on localhost, for trying
# `snakemake --profile profiles/slurm` on a laptop/CI box and for tests/test_slurm.py.
#
#   scripts/local-slurm.sh up       # install (apt) if needed, write configs, start daemons
#   scripts/local-slurm.sh status   # daemons + sinfo; exit 0 only if all are up
#   scripts/local-slurm.sh down     # cancel our jobs, stop daemons by recorded PID, wait
#
# Needs root and Debian/Ubuntu (apt packages slurm-wlm munge mariadb-server slurmdbd;
# Debian 12 ships Slurm 22.05). No systemd: each daemon runs in the foreground under
# setsid and its PID is recorded in $LOCAL_SLURM_RUN_DIR/pids/.
#
# Environment:
#   LOCAL_SLURM_RUN_DIR  state/logs/pids/db directory   (default /var/tmp/lymannet-slurm)
#   LOCAL_SLURM_NO_APT=1 never call apt-get (fail if the packages are missing)
#
# Why the config lives in /etc/slurm (and not under the run dir): the slurm-jobstep
# plugin strips every SLURM_* variable (SLURM_CONF included) before the inner `srun`,
# so a slurm.conf anywhere else makes every job fail.
set -euo pipefail

RUN_DIR=${LOCAL_SLURM_RUN_DIR:-/var/tmp/lymannet-slurm}
PID_DIR=$RUN_DIR/pids
LOG_DIR=$RUN_DIR/log
CONF_DIR=/etc/slurm
CLUSTER=lymannet
PARTITION=debug
ACCOUNT=lymannet
QOS_LIST="normal regular shared debug"
APT_PACKAGES="slurm-wlm munge mariadb-server slurmdbd"
MUNGE_SOCKET=/run/munge/munge.socket.2
DB_DIR=$RUN_DIR/mysqld          # socket, pid, log (owned by mysql)
DB_SOCKET=$DB_DIR/mysqld.sock

log() { printf '[local-slurm] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

need_root() { [ "$(id -u)" -eq 0 ] || die "must run as root (starts munged/slurmctld/slurmd as system daemons)"; }

pid_of() { # name -> pid if recorded and alive
    local f=$PID_DIR/$1.pid pid
    [ -s "$f" ] || return 1
    pid=$(cat "$f")
    kill -0 "$pid" 2>/dev/null || return 1
    # guard against PID reuse: the recorded process must still be that daemon
    # (the launchers setpriv/env exec it, so its comm is the daemon's name)
    [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$1" ] || return 1
    echo "$pid"
}

wait_for() { # timeout_s description command...   ($WATCH: daemon name that must stay alive)
    local t=$1 what=$2; shift 2
    local deadline=$((SECONDS + t))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || { log "timed out after ${t}s waiting for $what"; return 1; }
        # kill -0 only, not pid_of: until the launcher (setsid, setpriv, env) has exec'd
        # the daemon, its comm is still the launcher's name, and on a busy machine that
        # race read as "exited" (CI, 2026-12-03)
        if [ -n "${WATCH:-}" ] && ! kill -0 "$(cat "$PID_DIR/$WATCH.pid" 2>/dev/null)" 2>/dev/null; then
            log "$WATCH exited while waiting for $what; see $LOG_DIR/$WATCH.out and $LOG_DIR/"; return 1
        fi
        sleep 0.2
    done
}

start_daemon() { # name cmd... (runs in foreground mode under setsid, records the PID)
    local name=$1; shift
    if pid=$(pid_of "$name"); then log "$name already running (pid $pid)"; return 0; fi
    setsid "$@" </dev/null >>"$LOG_DIR/$name.out" 2>&1 &
    echo $! >"$PID_DIR/$name.pid"
    log "started $name (pid $!)"
}

install_packages() {
    local missing=()
    for p in $APT_PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "${LOCAL_SLURM_NO_APT:-0}" = 1 ] && die "missing packages (${missing[*]}) and LOCAL_SLURM_NO_APT=1"
    command -v apt-get >/dev/null || die "apt-get not available; install ${missing[*]} yourself"
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # policy-rc.d 101: keep the postinst scripts from starting services; we start them by hand.
    local prc=/usr/sbin/policy-rc.d created_prc=0
    if [ ! -e $prc ]; then printf '#!/bin/sh\nexit 101\n' >$prc; chmod +x $prc; created_prc=1; fi
    { apt-get install -y --no-install-recommends "${missing[@]}" >"$RUN_DIR/apt.log" 2>&1 ||
      { apt-get update >>"$RUN_DIR/apt.log" 2>&1 &&
        apt-get install -y --no-install-recommends "${missing[@]}" >>"$RUN_DIR/apt.log" 2>&1; }; } ||
        { [ $created_prc = 1 ] && rm -f $prc; die "apt-get failed, see $RUN_DIR/apt.log"; }
    [ $created_prc = 1 ] && rm -f $prc
    return 0
}

write_configs() {
    local cpus mem
    cpus=$(nproc)
    mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
    mem=$((mem * 90 / 100))
    mkdir -p "$CONF_DIR"
    cat >"$CONF_DIR/slurm.conf" <<EOF
# Written by lymannet scripts/local-slurm.sh -- single-node test cluster, not for production.
ClusterName=$CLUSTER
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$RUN_DIR/slurmctld
SlurmdSpoolDir=$RUN_DIR/slurmd
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
GresTypes=gpu
# scancel/time limit: SIGTERM, then SIGKILL after KillWait seconds.
KillWait=10
MinJobAge=300
InactiveLimit=0
SlurmdTimeout=300
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:1 Features=cpu,gpu State=UNKNOWN
PartitionName=$PARTITION Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    # /dev/null is a character device: a job asking for gres gpu:1 gets CUDA_VISIBLE_DEVICES=0.
    cat >"$CONF_DIR/gres.conf" <<EOF
AutoDetect=off
NodeName=localhost Name=gpu File=/dev/null
EOF
    cat >"$CONF_DIR/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$RUN_DIR/slurmdbd.pid
LogFile=$LOG_DIR/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$CONF_DIR/slurmdbd.conf"
}

# profiles/slurm with its site values swapped for this cluster's (tests/slurm_cluster.py does the
# swap): snakemake --profile profiles/slurm --profile $RUN_DIR/profile
write_profile() {
    local repo py
    repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    py=$repo/.venv/bin/python; [ -x "$py" ] || py=python3
    if (cd "$repo/tests" && "$py" -c "from slurm_cluster import write_local_profile as w; w(__import__('pathlib').Path('$RUN_DIR/profile'))") 2>"$LOG_DIR/profile.err"; then
        log "local override profile: snakemake --profile profiles/slurm --profile $RUN_DIR/profile"
    else
        log "(could not write $RUN_DIR/profile, see $LOG_DIR/profile.err)"
    fi
}

node_ready() { sinfo -h -N -n localhost -o %T 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; }

cmd_up() {
    need_root
    local t0=$SECONDS
    mkdir -p "$RUN_DIR" "$PID_DIR" "$LOG_DIR" "$RUN_DIR/slurmctld" "$RUN_DIR/slurmd"
    chmod 755 "$RUN_DIR"
    install_packages
    write_configs

    # munge (runs as user munge)
    install -d -o munge -g munge -m 755 /run/munge
    install -d -o munge -g munge -m 700 /var/lib/munge /var/log/munge
    [ -s /etc/munge/munge.key ] || { mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null ||
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null; }
    chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
    start_daemon munged setpriv --reuid=munge --regid=munge --init-groups \
        munged -F --socket=$MUNGE_SOCKET --pid-file=/run/munge/munged.pid \
        --log-file="$LOG_DIR/munged.log" --force
    WATCH=munged wait_for 15 munge munge -n -s $MUNGE_SOCKET

    # MariaDB with a private datadir (wiping the run dir resets job ids and accounting together)
    if [ ! -d "$RUN_DIR/mysql/mysql" ]; then
        install -d -o mysql -g mysql -m 750 "$RUN_DIR/mysql"
        mariadb-install-db --no-defaults --user=mysql --datadir="$RUN_DIR/mysql" \
            --auth-root-authentication-method=socket --skip-test-db >"$LOG_DIR/mariadb-install.log" 2>&1 ||
            die "mariadb-install-db failed, see $LOG_DIR/mariadb-install.log"
    fi
    install -d -o mysql -g mysql -m 755 "$DB_DIR"
    start_daemon mariadbd mariadbd --no-defaults --user=mysql --datadir="$RUN_DIR/mysql" \
        --socket="$DB_SOCKET" --pid-file="$DB_DIR/mariadbd.pid" --skip-networking \
        --log-error="$DB_DIR/mariadbd.log" --innodb-buffer-pool-size=64M
    WATCH=mariadbd wait_for 30 mariadb mariadb --no-defaults --socket="$DB_SOCKET" -e 'select 1'

    # slurmdbd finds the private socket through MYSQL_UNIX_PORT (libmariadb default socket)
    start_daemon slurmdbd env MYSQL_UNIX_PORT="$DB_SOCKET" slurmdbd -D
    WATCH=slurmdbd wait_for 30 slurmdbd sacctmgr -n list cluster
    if pid_of slurmctld >/dev/null; then scontrol reconfigure >/dev/null 2>&1 || true; fi
    start_daemon slurmctld slurmctld -D -i
    start_daemon slurmd slurmd -D -N localhost
    WATCH=slurmd wait_for 30 "node localhost idle" node_ready || {
        scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true
        wait_for 15 "node localhost idle" node_ready || die "node not ready: $(sinfo -N 2>&1)"
    }

    # accounting objects (idempotent): cluster, account, QOS, user
    sacctmgr -n list cluster format=cluster | grep -qw $CLUSTER || sacctmgr -i add cluster $CLUSTER >/dev/null
    for q in $QOS_LIST; do
        sacctmgr -n list qos format=name | grep -qw "$q" || sacctmgr -i add qos "$q" >/dev/null
    done
    sacctmgr -n list account format=account | grep -qw $ACCOUNT ||
        sacctmgr -i add account $ACCOUNT cluster=$CLUSTER description=lymannet-tests >/dev/null
    sacctmgr -n list assoc user=root account=$ACCOUNT format=user | grep -qw root ||
        sacctmgr -i add user root account=$ACCOUNT cluster=$CLUSTER defaultaccount=$ACCOUNT >/dev/null
    sacctmgr -i modify user root set qos="${QOS_LIST// /,}" defaultqos=normal >/dev/null 2>&1 || true
    wait_for 15 sacct sacct -n -X -S now
    write_profile
    log "up in $((SECONDS - t0))s: partition=$PARTITION account=$ACCOUNT qos={${QOS_LIST// /,}} features=cpu,gpu gres=gpu:1"
}

stop_pid() { # name
    local name=$1 pid
    if pid=$(pid_of "$name"); then
        local t0=$SECONDS
        kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + 15))
        while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then log "$name (pid $pid) ignored SIGTERM, SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; fi
        log "stopped $name (pid $pid) in $((SECONDS - t0))s"
    fi
    rm -f "$PID_DIR/$name.pid"
}

# With proctrack/linuxproc (no cgroups in a container) a job process whose parent died is no
# longer tracked and can outlive its job. Find those of *this* cluster by their environment
# (SLURM_CLUSTER_NAME=$CLUSTER and a SLURM_JOB_ID) and kill them by PID.
job_leftover_pids() {
    local f pid
    for f in /proc/[0-9]*/environ; do
        pid=${f#/proc/}; pid=${pid%/environ}
        [ "$pid" = $$ ] && continue
        local env
        env=$({ tr '\0' '\n' <"$f"; } 2>/dev/null) || continue
        grep -qx "SLURM_CLUSTER_NAME=$CLUSTER" <<<"$env" || continue
        grep -q '^SLURM_JOB_ID=' <<<"$env" || continue
        echo "$pid"
    done
}

kill_job_leftovers() {
    local pids
    pids=$(job_leftover_pids | tr '\n' ' ')
    [ -n "${pids// /}" ] || return 0
    log "killing leftover job processes of cluster $CLUSTER: $pids"
    kill -TERM $pids 2>/dev/null || true
    sleep 2
    pids=$(job_leftover_pids | tr '\n' ' ')
    [ -n "${pids// /}" ] && kill -KILL $pids 2>/dev/null || true
}

cmd_down() {
    need_root
    local t0=$SECONDS
    if pid_of slurmctld >/dev/null; then
        # cancel what is still queued/running on *this* cluster, give the steps KillWait to end
        scancel --cluster=$CLUSTER -u root >/dev/null 2>&1 || scancel -u root >/dev/null 2>&1 || true
        local deadline=$((SECONDS + 20))
        while [ -n "$(squeue -h -o %i 2>/dev/null)" ] && [ $SECONDS -lt $deadline ]; do sleep 0.5; done
    fi
    for d in slurmd slurmctld slurmdbd mariadbd munged; do stop_pid $d; done
    kill_job_leftovers
    log "down in $((SECONDS - t0))s"
}

cmd_status() {
    local rc=0 pid
    for d in munged mariadbd slurmdbd slurmctld slurmd; do
        if pid=$(pid_of $d); then echo "$d: running (pid $pid)"; else echo "$d: stopped"; rc=1; fi
    done
    if [ $rc = 0 ]; then sinfo -N -o '%N %P %T %c %m %G %f' || rc=1; fi
    return $rc
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *) echo "usage: $0 up|down|status   (run dir: $RUN_DIR)" >&2; exit 2 ;;
esac
