#!/usr/bin/env bash
# Proves node.sh's iptables clean-up (kube_rules, added_rules, remove_added_rules) on rules whose
# comments are shell code: it removes every rule and chain added since the record and nothing
# else, and runs none of the text it read from iptables-save. Runs as root in a network namespace
# of its own (`unshare -n`), whose iptables tables are its own: the machine's firewall is never
# read or changed. Takes well under a second.
#   hack/cluster/test-rule-removal.sh
# NODE_SH=FILE tests another copy of node.sh (one with the guard that returns when sourced).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
node_sh=${NODE_SH:-$here/node.sh}

if [ "${1:-}" != --inside ]; then
  [ "$(id -u)" = 0 ] || { echo "test-rule-removal: run as root (it needs a network namespace)" >&2; exit 1; }
  for tool in unshare iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
    command -v "$tool" >/dev/null || { echo "test-rule-removal: $tool is missing" >&2; exit 1; }
  done
  exec env NODE_SH="$node_sh" unshare -n "$here/test-rule-removal.sh" --inside
fi

work=$(mktemp -d)
# What a shell would make of a comment, if it ever ran one: /tmp/pwned-<pid>-<which comment>.
mark=/tmp/pwned-$$
trap 'rm -rf "$work" "$mark"-*' EXIT
# The functions under test, with the record of the start in the scratch directory
# (RULES_BEFORE=$CLUSTER_DIR/node/iptables.before); node.sh defines them and returns when sourced.
export CLUSTER_DIR=$work/cluster
mkdir -p "$CLUSTER_DIR/node"
# shellcheck source=node.sh
. "$node_sh"

# Each iptables-restore and ip6tables-restore run is logged (then the real one runs).
mkdir -p "$work/bin"
for tool in iptables-restore ip6tables-restore; do
  printf '#!/bin/sh\necho %s >>"%s"\nexec %s "$@"\n' "$tool" "$work/restores" "$(command -v "$tool")" >"$work/bin/$tool"
  chmod +x "$work/bin/$tool"
done
export PATH="$work/bin:$PATH"
restores() { local n=0; [ ! -f "$work/restores" ] || n=$(wc -l <"$work/restores"); rm -f "$work/restores"; echo "$n"; }

failed=0
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; failed=1; }
# Every table's chains and rules (a table nft creates on first use stays, empty: not compared).
save_all() {
  local ipt table
  for ipt in iptables ip6tables; do
    for table in filter nat mangle; do echo "$ipt $table"; "$ipt" -t "$table" -S; done
  done
}
payload() { printf '%s' "touch $mark-$1"; }

iptables-save | grep -q '^-A ' && { echo "test-rule-removal: not a fresh network namespace" >&2; exit 1; }

# The machine's own before the node: a foreign KUBE- chain and a rule jumping to it stay.
iptables -N KUBE-FOREIGN
iptables -A KUBE-FOREIGN -m comment --comment "foreign; $(payload foreign)" -j RETURN
iptables -A INPUT -j KUBE-FOREIGN
kube_rules >"$RULES_BEFORE"
before=$(save_all)

# What a node's kubelet and kube-proxy might add, with comments crafted to run code if read by
# a shell: `;`, `$( )`, backquotes, quotes of both kinds, backslashes, runs of spaces, a glob.
add_rules() {
  iptables -N KUBE-TEST
  iptables -A KUBE-TEST -m comment --comment "a; $(payload semicolon)" -j RETURN
  iptables -A KUBE-TEST -s 10.0.0.1/32 -m comment \
    --comment "it's \"quoted\"   with  spaces \$($(payload dollar)) \`$(payload backquote)\` \\ *" -j ACCEPT
  # The same rule twice: added_rules counts lines as a multiset.
  iptables -A KUBE-TEST -p tcp --dport 80 -j ACCEPT
  iptables -A KUBE-TEST -p tcp --dport 80 -j ACCEPT
  iptables -A INPUT -m comment --comment "x' && $(payload jump) #" -j KUBE-TEST
  # Another table and chains without rules.
  iptables -t nat -N KUBE-SVC-TEST
  iptables -t nat -N KUBE-EMPTY
  iptables -t nat -A KUBE-SVC-TEST -p tcp -m comment --comment "ns/svc:http\"; $(payload nat)" -j DNAT --to-destination 10.0.0.2:80
  iptables -t nat -A PREROUTING -j KUBE-SVC-TEST
  ip6tables -N KUBE-TEST6
  ip6tables -A KUBE-TEST6 -m comment --comment "v6 | $(payload v6)" -j RETURN
  ip6tables -A OUTPUT -j KUBE-TEST6
}

# Every rule and chain added is gone, the foreign ones stay, and no comment ran.
check() {
  local round=$1 pwned
  local after; after=$(save_all)
  if [ "$after" = "$before" ]; then
    ok "$round: the tables are as recorded before (every rule and chain added is gone)"
  else
    bad "$round: the tables differ from the record:"; diff <(echo "$before") <(echo "$after") || true
  fi
  if [ -z "$(added_rules)" ]; then ok "$round: added_rules (left_behind's check) is empty"; else bad "$round: added_rules still lists: $(added_rules)"; fi
  iptables -S KUBE-FOREIGN | grep -q -- '--comment "foreign' && iptables -C INPUT -j KUBE-FOREIGN \
    && ok "$round: the foreign chain KUBE-FOREIGN and the jump to it are untouched" \
    || bad "$round: the foreign chain or its jump was removed"
  pwned=$(compgen -G "$mark-*" || true)
  if [ -z "$pwned" ]; then ok "$round: no comment was run (no $mark-* file)"; else bad "$round: comments were run: $pwned"; fi
}

add_rules
n=$(added_rules | wc -l)
echo "recorded $n added rules and chains, e.g.:"
added_rules | grep -- '--comment' | head -n 3 | sed 's/^/  /'
# 4 chains (KUBE-TEST, KUBE-SVC-TEST, KUBE-EMPTY, KUBE-TEST6) and 9 rules.
[ "$n" -eq 13 ] || bad "round 1: expected 13 added lines, got $n"
remove_added_rules
r=$(restores)
[ "$r" = 3 ] && ok "round 1: 3 restore runs, one per table (iptables filter and nat, ip6tables filter)" \
  || bad "round 1: $r restore runs, not 3 (one per table)"
check "round 1 (one batch per table)"

# A rule listed but gone by the time it is deleted (kube-proxy's own, say) fails its table's
# batch: the table's other rules are then deleted one by one. Here added_rules lists one rule that
# does not exist; node.sh, sourced again, puts the real one back.
add_rules
added_rules() {
  comm -13 <(sort "$RULES_BEFORE") <(kube_rules | sort)
  echo "iptables filter -A KUBE-TEST -p udp -m udp --dport 9 -m comment --comment \"gone; $(payload gone)\" -j DROP"
}
remove_added_rules
# iptables filter: the batch (fails), then its 5 real rules and the missing one alone; nat and
# ip6tables filter: one batch each.
r=$(restores)
[ "$r" = 9 ] && ok "round 2: 9 restore runs (the failed batch, then each of its 6 rules alone, and 2 batches)" \
  || bad "round 2: $r restore runs, not 9"
# shellcheck source=node.sh
. "$node_sh"
check "round 2 (a listed rule already gone: one restore per rule)"

[ "$failed" = 0 ] || { echo "test-rule-removal: FAILED"; exit 1; }
echo "test-rule-removal: passed"
