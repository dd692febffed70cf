#!/bin/bash
# Lab only (packaging/test-nspawn): checks of the shipped units under a booted systemd. One line per check in
# /var/lib/ybgate-lab/result ("ok …" or "FAIL …"), then PASS or FAIL; the journal of ybgate.service beside it.
set -u
lab=/var/lib/ybgate-lab
out=$lab/result
: >"$out"
failed=0
ok() { echo "ok   $*" >>"$out"; }
fail() { echo "FAIL $*" >>"$out"; failed=1; }
prop() { systemctl show -P "$2" "$1"; }
call() { runuser -u "$1" -- /opt/ybgate/bin/python "$lab/his_call.py" "$2"; }
wait_active() {
  for _ in $(seq 1 60); do [ "$(systemctl is-active ybgate.service)" = active ] && return 0; sleep 0.5; done
  return 1
}
# the first call may race the gateway's first sign-in with the simulator that starts beside it: ask a few times
call_until_ok() {
  local i
  for i in $(seq 1 20); do r=$(call cashier "$1$i") && { echo "$r"; return 0; }; sleep 0.5; done
  echo "$r"; return 1
}

trap 'journalctl -u ybgate.service -o cat >"$lab/journal"' EXIT
wait_active && ok "ybgate.service active under Type=notify (READY=1 sent)" || fail "ybgate.service not active: $(systemctl is-active ybgate.service)"
[ "$(systemctl is-active ybgate.socket)" = active ] && ok "ybgate.socket active" || fail "ybgate.socket not active"
got=$(stat -c '%a %U:%G' /run/ybgate)
[ "$got" = "710 ybgate:ybgate-his" ] && ok "/run/ybgate $got (tmpfiles.d)" || fail "/run/ybgate is $got"
got=$(stat -c '%a %U:%G' /run/ybgate/api.sock)
[ "$got" = "660 ybgate:ybgate-his" ] && ok "api.sock $got (socket unit)" || fail "api.sock is $got"
got=$(stat -c '%a %U:%G' /var/lib/ybgate)
[ "$got" = "750 ybgate:ybgate" ] && ok "/var/lib/ybgate $got" || fail "/var/lib/ybgate is $got"
got=$(stat -c '%U' /proc/"$(prop ybgate.service MainPID)")
[ "$got" = ybgate ] && ok "daemon runs as $got" || fail "daemon runs as $got"

nft list table inet ybgate >"$lab/nft" 2>&1 && grep -q 10.1.2.3 "$lab/nft" \
  && ok "nftables table inet ybgate on eth1, upstreams whitelisted (CAP_NET_ADMIN under the unit's sandbox)" \
  || fail "nftables: $(head -3 "$lab/nft")"
r=$(call_until_ok a) && ok "1101 from the HIS account (group ybgate-his) over the socket: $r" || fail "1101 from the HIS account: $r"
sleep 1
n=$(journalctl -t ybgate-access -o cat | grep -c ' 1101 H44030000001')
line=$(journalctl -t ybgate-access -o cat | grep -m1 ' 1101 H44030000001')
[ "$n" -ge 1 ] && ok "access log in the journal (journalctl -t ybgate-access): $line" || fail "no access line in the journal"
r=$(call outsider b); rc=$?
[ $rc = 2 ] && ok "an account outside ybgate-his is refused by the socket" || fail "outsider got: $r (rc $rc)"

runuser -u ybgate -- ybgate check --config /etc/ybgate/ybgate.yaml >/dev/null 2>&1 \
  && ok "ybgate check as the service user" || fail "ybgate check as the service user"
ybgate status >"$lab/status" 2>&1 && ok "ybgate status answers" || fail "ybgate status: $(head -3 "$lab/status")"

sleep 12   # longer than WatchdogSec=10s: the watchdog is fed
[ "$(prop ybgate.service NRestarts)" = 0 ] && [ "$(systemctl is-active ybgate.service)" = active ] \
  && ok "alive after 12 s with WatchdogSec=10s, no restart" || fail "watchdog: NRestarts=$(prop ybgate.service NRestarts)"

pid=$(prop ybgate.service MainPID)
systemctl reload ybgate.service
sleep 1
[ "$(prop ybgate.service MainPID)" = "$pid" ] && [ "$(systemctl is-active ybgate.service)" = active ] \
  && journalctl -u ybgate.service -o cat | grep -q reload \
  && ok "systemctl reload: same process, reload logged" || fail "reload"

# a HIS call made while the service restarts waits in the socket's backlog and is answered by the new process
systemctl restart --no-block ybgate.service
r=$(call cashier c) && ok "1101 sent during a restart answered: $r" || fail "call during restart: $r"
wait_active
r=$(call cashier d) && ok "1101 after the restart: $r" || fail "after restart: $r"

before=$(prop ybgate.service NRestarts)
pid=$(prop ybgate.service MainPID)
[ "$pid" -gt 0 ] && kill -9 "$pid"   # MainPID is 0 when the service is down: never kill -9 0
sleep 2
wait_active && [ "$(prop ybgate.service NRestarts)" = $((before + 1)) ] \
  && ok "SIGKILL: restarted by systemd (Restart=on-failure)" || fail "SIGKILL: NRestarts=$(prop ybgate.service NRestarts)"
r=$(call_until_ok e) && ok "1101 after the SIGKILL: $r" || fail "after SIGKILL: $r"
got=$(cat /var/lib/ybgate/last-exit)
[ "$got" = "signal killed KILL" ] && ok "ExecStopPost wrote last-exit: $got" || fail "last-exit after SIGKILL: $got"

# A hung daemon (stopped, so it feeds no watchdog) is killed by systemd's watchdog. Nobody inside sees that:
# ExecStopPost records it and the next run reports it (log line, metric).
before=$(prop ybgate.service NRestarts)
pid=$(prop ybgate.service MainPID)
[ "$pid" -gt 0 ] && kill -STOP "$pid"
for _ in $(seq 1 50); do [ "$(prop ybgate.service NRestarts)" = $((before + 1)) ] && break; sleep 0.5; done
wait_active
got=$(cat /var/lib/ybgate/last-exit)
[ "$got" = "watchdog killed ABRT" ] && ok "watchdog kill after WatchdogSec=10s, restarted; last-exit: $got" \
  || fail "watchdog: last-exit '$got', NRestarts $before -> $(prop ybgate.service NRestarts)"
line=$(journalctl -u ybgate.service -o cat | grep previous_run_ended | tail -1)
echo "$line" | grep -q '"result": "watchdog"' && ok "the next run logs it: $line" || fail "no previous_run_ended: $line"
metric() {
  /opt/ybgate/bin/python -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:9180/metrics").read().decode())' \
    | grep '^ybgate_previous_exit{'
}
got=$(for _ in 1 2 3 4 5; do metric && break; sleep 1; done)
echo "$got" | grep -q 'result="watchdog"' && ok "and its metric: $got" || fail "ybgate_previous_exit: $got"

cp /etc/ybgate/ybgate.yaml "$lab/ybgate.yaml.good"
sed -i 's/^  default_timeout: 30 /  default_timeout: -5 /' /etc/ybgate/ybgate.yaml
systemctl restart ybgate.service
n1=$(prop ybgate.service NRestarts)
sleep 3   # RestartSec=1s: a restart would have happened by now
status=$(prop ybgate.service ExecMainStatus)
[ "$status" = 78 ] && [ "$(systemctl is-active ybgate.service)" != active ] \
  && [ "$(prop ybgate.service NRestarts)" = "$n1" ] \
  && ok "a bad setting: exit 78, not restarted ($(journalctl -u ybgate.service -o cat | grep -m1 default_timeout | cut -c1-100))" \
  || fail "bad setting: status $status, state $(systemctl is-active ybgate.service), NRestarts $n1 -> $(prop ybgate.service NRestarts)"
cp "$lab/ybgate.yaml.good" /etc/ybgate/ybgate.yaml
systemctl reset-failed ybgate.service
systemctl start ybgate.service
wait_active && ok "started again with the good file" || fail "not started with the good file"

echo "systemd-analyze security: $(systemd-analyze security ybgate.service 2>/dev/null | tail -1)" >>"$out"
[ $failed = 0 ] && echo PASS >>"$out" || echo FAIL >>"$out"
