#!/usr/bin/env bash
# A local one-node SLURM cluster (slurmctld + slurmd + munge on this machine) for the launcher tests and for
# trying the submitit launcher: installs Debian's slurm-wlm and munge with apt when missing, writes a
# single-node slurm.conf (no cgroups: proctrack/linuxproc, task/none; job states through squeue/scontrol, no
# accounting database), starts the daemons and waits until the node takes jobs. Idempotent: returns at once
# when the cluster already answers. Needs root. Usage: scripts/start-slurm.sh
set -euo pipefail

if command -v sinfo >/dev/null && sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
    echo "slurm: already up ($(sinfo -h -o '%N %t %c CPUs'))"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/start-slurm.sh: needs root (it installs packages and starts daemons)" >&2
    exit 1
fi
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    echo "slurm: installing slurm-wlm and munge with apt"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurm-wlm munge >/dev/null
fi

host=$(hostname -s)
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
conf_dir=/etc/slurm
mkdir -p "$conf_dir" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /var/lib/munge /var/log/munge
cat > "$conf_dir/slurm.conf" <<CONF
# written by cxr-ldm scripts/start-slurm.sh: one node, this machine
ClusterName=local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobRequeue=1
MinJobAge=300
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF

if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key
if ! pgrep -x munged >/dev/null; then
    runuser -u munge -- /usr/sbin/munged --force 2>/dev/null || /usr/sbin/munged --force
fi
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd

for _ in $(seq 1 60); do
    state=$(sinfo -h -o '%t' 2>/dev/null | head -1 || true)
    case "$state" in
        idle|mix|alloc) echo "slurm: up ($(sinfo -h -o '%N %t %c CPUs'))"; exit 0 ;;
        down*|drain*) scontrol update nodename="$host" state=resume 2>/dev/null || true ;;
    esac
    sleep 1
done
echo "scripts/start-slurm.sh: the node did not come up; see /var/log/slurm/slurmctld.log and slurmd.log" >&2
exit 1
