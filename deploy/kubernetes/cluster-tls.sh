#!/usr/bin/env bash
# Writes the cluster TLS files of the microservices overlay: a CA, and one member certificate
# that every pod presents on the cluster port (9095) and with which it dials the others (mutual
# TLS, docs/security.md). Then make the Secret the pods mount:
#
#   deploy/kubernetes/cluster-tls.sh kiln ./kiln-cluster-tls
#   kubectl -n kiln create secret generic kiln-cluster-tls \
#     --from-file=./kiln-cluster-tls/ca.crt --from-file=./kiln-cluster-tls/tls.crt \
#     --from-file=./kiln-cluster-tls/tls.key
#
# Arguments: the namespace (default kiln) and the directory to write (default
# ./kiln-cluster-tls). KILN_TLS_DAYS sets the validity (default 825 days). Keep ca.key out of
# the cluster: it signs members.
#
# A caller checks the address it dials against the certificate's names, so the certificate
# names every address a member advertises: the metastore's kiln-metastore-N.kiln-metastore
# (N up to 4, for a group of 5), and the ingesters' and queriers' per-pod names under their
# headless Services in NAMESPACE (one wildcard each, whatever the number of replicas).
# cert-manager can issue the same Secret: a Certificate with these dnsNames, usages server auth
# and client auth, and secretName kiln-cluster-tls.
set -euo pipefail

namespace="${1:-kiln}"
dir="${2:-kiln-cluster-tls}"
days="${KILN_TLS_DAYS:-825}"

names="DNS:kiln-metastore-0.kiln-metastore"
for i in 1 2 3 4; do names="$names,DNS:kiln-metastore-$i.kiln-metastore"; done
names="$names,DNS:*.kiln-metastore.$namespace.svc"
names="$names,DNS:*.kiln-ingester.$namespace.svc"
names="$names,DNS:*.kiln-querier-headless.$namespace.svc"

mkdir -p "$dir"
umask 077
cd "$dir"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -days "$days" -subj "/CN=kiln-cluster-ca" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout ca.key -out ca.crt 2>/dev/null

openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -subj "/CN=kiln-member" -keyout tls.key -out tls.csr 2>/dev/null
cat > tls.ext <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$names
EXT
openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
  -days "$days" -extfile tls.ext -out tls.crt 2>/dev/null
rm -f tls.csr tls.ext ca.srl

echo "wrote $dir/ca.crt, $dir/tls.crt and $dir/tls.key (and $dir/ca.key) for namespace $namespace"
