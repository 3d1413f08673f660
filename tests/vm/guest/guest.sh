#!/bin/bash
# Runs inside the guest (root's autologin shell on the serial console, unconfined_t, SELinux
# enforcing): install mmd as the guide says, run the mail scenario, collect what the host
# asserts on. Usage: guest.sh PAYLOAD RESULTS. It records, it does not judge: every step's
# exit status goes to RESULTS/steps.tsv and its output to RESULTS/steps/NAME.out; the host
# (tests/vm/test_selinux_enforcing.py) decides.
set -u
PAYLOAD=$1
RESULTS=$2
export PAYLOAD RESULTS
mkdir -p "$RESULTS/steps" "$RESULTS/mail" "$RESULTS/facts"
MANAGER_SOCKET=/var/spool/postfix/milter-manager/milter-manager.sock
MAILBOX=/var/mail/vhosts/inbox/new
OBJECT=org.miltermanager.Manager1
OBJECT_PATH=/org/miltermanager/Manager1

# step NAME COMMAND...: run, record exit status and seconds, keep the output.
step() {
    local name=$1 start rc
    shift
    echo "=== $name: $*"
    start=$EPOCHREALTIME
    "$@" > "$RESULTS/steps/$name.out" 2>&1
    rc=$?
    printf '%s\t%s\t%s\n' "$name" "$rc" "$(awk "BEGIN { print $EPOCHREALTIME - $start }")" \
        >> "$RESULTS/steps.tsv"
    tail -n 5 "$RESULTS/steps/$name.out"
    echo "=== $name: exit $rc"
    return $rc
}

wait_for() {  # SECONDS COMMAND...: until the command succeeds
    local deadline=$((SECONDS + $1)) limit=$1
    shift
    while ((SECONDS < deadline)); do
        "$@" > /dev/null 2>&1 && return 0
        sleep 1
    done
    echo "$(date +%T) timed out after $limit s: $*"
    return 1
}

# Postfix answers 220 once smtpd has connected to its milter (mmd, started on that connection)
smtp_ready() { timeout 90 bash -c 'exec 3<>/dev/tcp/127.0.0.1/25; head -n 1 <&3' | grep -q '^220'; }

# send NAME [swaks options...]: one SMTP transaction, transcript in mail/NAME.swaks
send() {
    local name=$1
    shift
    swaks --server 127.0.0.1:25 --helo client.example.net --from sender@example.com \
        --to receiver@example.org --timeout 120 --hide-informational "$@" \
        > "$RESULTS/mail/$name.swaks" 2>&1
    echo "$?" > "$RESULTS/mail/$name.rc"
    # the delivered copy, found by the queue id Postfix answered with
    local id
    id=$(sed -n 's/.*250 2.0.0 Ok: queued as \([0-9A-Za-z]*\).*/\1/p' "$RESULTS/mail/$name.swaks" | tail -n 1)
    if [ -n "$id" ]; then
        if wait_for 60 grep -rlF -- "with ESMTP id $id" "$MAILBOX"; then
            cp "$(grep -rlF -- "with ESMTP id $id" "$MAILBOX" | head -n 1)" "$RESULTS/mail/$name.eml"
        fi
    fi
    return 0
}

remote() { send "$@" --xclient-name mx.example.net --xclient-addr 203.0.113.5; }

manager_state() { systemctl show -p ActiveState --value milter-manager.service; }

# The scenario: mail, reload, every control method, report, stop and restart. PHASE names the
# files it writes (enforcing: dontaudit rules on; dontaudit-off: after semodule -DB).
scenario() {
    local phase=$1
    # stopped (the socket stays): the first mail shows socket activation
    systemctl stop milter-manager.service
    manager_state > "$RESULTS/facts/$phase-state-before-mail"
    remote "$phase-clean" --body 'La de da de da.'
    manager_state > "$RESULTS/facts/$phase-state-after-mail"
    ps -eZ > "$RESULTS/facts/$phase-ps"
    ls -dZ /usr/sbin/milter-manager /run/milter-manager /var/spool/postfix/milter-manager \
        "$MANAGER_SOCKET" /var/cache/milter-manager \
        > "$RESULTS/facts/$phase-labels" 2>&1
    remote "$phase-gtube" --body 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X'
    remote "$phase-eicar" --body 'X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'
    send "$phase-local" --body 'From this host.'

    step "$phase-reload" timeout 150 systemctl reload milter-manager
    send "$phase-after-reload" --body 'After the reload.'

    # every method of org.miltermanager.Manager1, as root
    step "$phase-busctl-Reload" busctl call --system $OBJECT $OBJECT_PATH $OBJECT Reload
    step "$phase-busctl-ListMilters" busctl call --system $OBJECT $OBJECT_PATH $OBJECT ListMilters
    step "$phase-busctl-GetMilter" busctl call --system $OBJECT $OBJECT_PATH $OBJECT GetMilter s opendkim
    step "$phase-busctl-SetMilterEnabled-off" busctl call --system $OBJECT $OBJECT_PATH $OBJECT \
        SetMilterEnabled sb clamav-milter false
    step "$phase-busctl-SetMilterEnabled-on" busctl call --system $OBJECT $OBJECT_PATH $OBJECT \
        SetMilterEnabled sb clamav-milter true
    step "$phase-busctl-GetStatistics" busctl call --system $OBJECT $OBJECT_PATH $OBJECT GetStatistics
    step "$phase-busctl-ShowConfig" busctl call --system $OBJECT $OBJECT_PATH $OBJECT ShowConfig
    step "$phase-busctl-Version" busctl get-property --system $OBJECT $OBJECT_PATH $OBJECT Version
    step "$phase-busctl-introspect" busctl introspect --system $OBJECT $OBJECT_PATH
    # an unprivileged user: reading is allowed, changing is refused
    step "$phase-busctl-nobody-ListMilters" runuser -u nobody -- \
        busctl call --system $OBJECT $OBJECT_PATH $OBJECT ListMilters
    step "$phase-busctl-nobody-SetMilterEnabled" runuser -u nobody -- \
        busctl call --system $OBJECT $OBJECT_PATH $OBJECT SetMilterEnabled sb opendkim false

    # the statistics report, once by its timer's service
    step "$phase-report-timer" systemctl enable --now milter-manager-report.timer
    step "$phase-report" timeout 600 systemctl start milter-manager-report.service
    step "$phase-report-timer-stop" systemctl disable --now milter-manager-report.timer

    # stop: the socket starts it again on the next mail; restart: same daemon, new process
    step "$phase-stop" systemctl stop milter-manager.service
    manager_state > "$RESULTS/facts/$phase-state-after-stop"
    send "$phase-after-stop" --body 'After a stop.'
    manager_state > "$RESULTS/facts/$phase-state-after-stop-mail"
    step "$phase-restart" systemctl restart milter-manager.service
    send "$phase-after-restart" --body 'After a restart.'
    manager_state > "$RESULTS/facts/$phase-state-after-restart"
}

# what the host keeps as CI artefacts, whatever happened
collect() {
    journalctl -b --no-pager -o short-precise > "$RESULTS/journal.txt" 2>&1
    cp /var/log/audit/audit.log "$RESULTS/audit.log" 2>/dev/null
    ausearch -m AVC,USER_AVC -ts boot -i > "$RESULTS/avc-all-interpreted.txt" 2>&1
    audit2why -i /var/log/audit/audit.log > "$RESULTS/audit2why.txt" 2>&1
    postconf -n > "$RESULTS/facts/postconf" 2>&1
    semodule -l > "$RESULTS/facts/modules" 2>&1
    cp -r /var/mail/vhosts/inbox/new "$RESULTS/mailbox" 2>/dev/null
}

# --- the machine as booted
cat /proc/uptime > "$RESULTS/facts/uptime-at-start"
getenforce > "$RESULTS/facts/getenforce" 2>&1
sestatus > "$RESULTS/facts/sestatus" 2>&1
id -Z > "$RESULTS/facts/shell-context" 2>&1
cat /proc/cmdline > "$RESULTS/facts/cmdline"
dpkg-query -W selinux-policy-default linux-image-amd64 postfix systemd > "$RESULTS/facts/versions" 2>&1
uname -r >> "$RESULTS/facts/versions"
# proof that enforcement bites: postmap (postfix_map_t) may not write below /root
echo 'key value' > /root/enforcement-proof
step enforcement-proof postmap /root/enforcement-proof

# --- install and configure as the guide says
if ! step guide bash -c 'source "$PAYLOAD/guide.sh"'; then
    ausearch -m AVC,USER_AVC -ts boot > "$RESULTS/avc-enforcing.txt" 2>&1
    collect
    exit 1
fi
echo "$(date +%T) waiting for the milter sockets and Postfix"
for socket in /var/spool/postfix/spamass/spamass.sock /run/clamav/clamav-milter.ctl \
        /run/opendkim/opendkim.sock "$MANAGER_SOCKET"; do
    wait_for 180 test -S "$socket" || ls -la "$(dirname "$socket")"
done
echo "$(date +%T) sockets there"
if ! wait_for 180 smtp_ready; then
    systemctl status --no-pager 'postfix@-' milter-manager.service
    journalctl -b --no-pager -n 40 -u 'postfix@-' -t postfix/smtpd -t postfix/master
    ausearch -m AVC,USER_AVC -ts boot | tail -n 30
    ausearch -m AVC,USER_AVC -ts boot > "$RESULTS/avc-enforcing.txt" 2>&1
    collect
    exit 1
fi
systemctl --no-pager --failed
echo "$(date +%T) ready"
# the guide's check commands
step check-show-config milter-manager --show-config
step check-status systemctl status --no-pager milter-manager.socket
# SMTP probes and Postfix's first connections may have started mmd: show socket activation
systemctl stop milter-manager.service

scenario enforcing
date '+%x %X' > "$RESULTS/facts/enforcing-end"
ausearch -m AVC,USER_AVC -ts boot > "$RESULTS/avc-enforcing.txt" 2>&1

# --- once more with the dontaudit rules off
step semodule-DB semodule -DB
start=$(date '+%x %X')
echo "$start" > "$RESULTS/facts/dontaudit-off-start"
sleep 1
scenario dontaudit-off
ausearch -m AVC,USER_AVC -ts $start > "$RESULTS/avc-dontaudit-off.txt" 2>&1
step semodule-B semodule -B

collect
echo "guest.sh: done"
