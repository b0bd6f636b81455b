#!/usr/bin/env bash
# Give a test run the Helm chart's identity: render only the chart's ServiceAccount,
# RBAC and ValidatingWebhookConfiguration, apply them (server-side) to $KUBECONFIG's
# cluster, and write a kubeconfig that authenticates as that ServiceAccount. An operator
# started with that kubeconfig has exactly the chart's permissions, so the end-to-end
# suite proves the RBAC is enough (and a missing verb shows up as a 403).
#
#   KUBECONFIG=<admin> e2e/chart-identity.sh    prints the new kubeconfig's path last
#
# Environment (all optional):
#   POD_NAMESPACE                  namespace of the ServiceAccount (default datajob-system; created)
#   DATAJOB_RELEASE                Helm release name (default datajob: ServiceAccount,
#                                  ClusterRole, ... are all called `datajob`)
#   DATAJOB_WEBHOOK_URL            set: the webhook configuration calls this URL
#                                  (an operator outside the cluster)
#   DATAJOB_WEBHOOK_CONFIGURATION  name of the webhook configuration (default datajob.dev)
#   DATAJOB_WEBHOOK_SECRET         name of the webhook certificate Secret (default datajob-webhook-cert)
#   DATAJOB_LEASE_NAME             name of the leader-election Lease (default datajob-operator)
#   DATAJOB_CHART_TOKEN_DURATION   lifetime of the token (default 3h)
#   DATAJOB_CHART_KUBECONFIG       where to write the kubeconfig (default: next to
#                                  $KUBECONFIG, chart-identity-<release>-<namespace>.kubeconfig)
#   HELM, KUBECTL                  the binaries (default: helm from e2e/tools.sh, kubectl on PATH)
# rbac.kwokNodes, rbac.clusterAPI and rbac.karpenter are on: the end-to-end NodeGroups use all three providers; so is
# preflight.secrets: the preflight tests check Secrets too.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
: "${KUBECONFIG:?set KUBECONFIG to an admin kubeconfig (eval \$(bash e2e/cluster.sh env))}"
KUBECTL=${KUBECTL:-kubectl}
HELM=${HELM:-$(bash "$HERE/tools.sh" | tail -1)/helm}
NS=${POD_NAMESPACE:-datajob-system}
RELEASE=${DATAJOB_RELEASE:-datajob}
DURATION=${DATAJOB_CHART_TOKEN_DURATION:-3h}
log() { printf '[chart-identity] %s\n' "$*" >&2; }

# logArchive.*: the log archive's rights (a run pod's logs; its finalizer) are granted too.
set_args=(--set rbac.kwokNodes=true --set rbac.clusterAPI=true --set rbac.karpenter=true --set preflight.secrets=true
  --set logArchive.endpoint=http://127.0.0.1:9000 --set logArchive.bucket=datajob-logs --set logArchive.existingSecret=datajob-log-archive)
[ -n "${DATAJOB_WEBHOOK_URL:-}" ] && set_args+=(--set-string "webhook.url=$DATAJOB_WEBHOOK_URL")
[ -n "${DATAJOB_WEBHOOK_CONFIGURATION:-}" ] && set_args+=(--set-string "webhook.configurationName=$DATAJOB_WEBHOOK_CONFIGURATION")
[ -n "${DATAJOB_WEBHOOK_SECRET:-}" ] && set_args+=(--set-string "webhook.secretName=$DATAJOB_WEBHOOK_SECRET")
[ -n "${DATAJOB_LEASE_NAME:-}" ] && set_args+=(--set-string "leaderElection.leaseName=$DATAJOB_LEASE_NAME")

"$KUBECTL" create namespace "$NS" --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
# Rendered for the cluster's own version: without one, helm template assumes v1.20,
# which the chart's kubeVersion refuses.
kube_version=$("$KUBECTL" get --raw /version | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p')
manifest=$("$HELM" template "$RELEASE" "$ROOT/charts/datajob" --namespace "$NS" "${set_args[@]}" \
  --kube-version "$kube_version" \
  --show-only templates/serviceaccount.yaml \
  --show-only templates/clusterrole.yaml \
  --show-only templates/role.yaml \
  --show-only templates/webhook.yaml)
printf '%s\n' "$manifest" | "$KUBECTL" apply --server-side --force-conflicts --field-manager=chart-identity -f - >&2

# The ServiceAccount's name as the chart rendered it.
SA=$(printf '%s\n' "$manifest" | awk '/^kind: ServiceAccount/{sa=1} sa && /^  name:/{print $2; exit}')
[ -n "$SA" ] || { log "no ServiceAccount in the rendered chart"; exit 1; }
TOKEN=$("$KUBECTL" -n "$NS" create token "$SA" --duration "$DURATION")

# The cluster's address and CA, as the admin kubeconfig has them.
SERVER=$("$KUBECTL" config view --minify --raw -o 'jsonpath={.clusters[0].cluster.server}')
CA_DATA=$("$KUBECTL" config view --minify --raw -o 'jsonpath={.clusters[0].cluster.certificate-authority-data}')
if [ -z "$CA_DATA" ]; then
  CA_FILE=$("$KUBECTL" config view --minify --raw -o 'jsonpath={.clusters[0].cluster.certificate-authority}')
  [ -n "$CA_FILE" ] || { log "the current context of \$KUBECONFIG names no cluster CA"; exit 1; }
  CA_DATA=$(base64 -w0 <"$CA_FILE")
fi

FIRST=${KUBECONFIG%%:*}
OUT=${DATAJOB_CHART_KUBECONFIG:-$(dirname "$FIRST")/chart-identity-$RELEASE-$NS.kubeconfig}
umask 077
cat >"$OUT" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: datajob
    cluster:
      server: $SERVER
      certificate-authority-data: $CA_DATA
users:
  - name: $SA
    user:
      token: $TOKEN
contexts:
  - name: $SA@datajob
    context:
      cluster: datajob
      user: $SA
      namespace: $NS
current-context: $SA@datajob
EOF
log "ServiceAccount $NS/$SA (release $RELEASE), token valid for $DURATION"
echo "$OUT"
