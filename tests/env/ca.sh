#!/usr/bin/env bash
# Test PKI made with the openssl CLI (ECDSA P-256, SHA-256).
#
#   tests/env/ca.sh DIR
#
# Writes into DIR (keeps existing files: run it again and nothing changes):
#   ca.pem, ca.key                     test CA ("transmitter test CA")
#   server.pem, server.key             server cert from ca.pem, SAN DNS:localhost, IP:127.0.0.1, IP:::1
#   client.pem, client.key             client cert from ca.pem (clientAuth), for mTLS tests
#   wrong-host.pem, wrong-host.key     from ca.pem but for DNS:wrong-host.invalid only (host mismatch)
#   expired-server.pem, expired-server.key  from ca.pem, localhost SANs, expired in 2020
#   other-ca.pem, other-ca.key         a second, unrelated CA
#   other-server.pem, other-server.key server cert from other-ca.pem, same SANs as server.pem
#                                      ("certificate from another CA" fault test)
# Certificates are valid for 10 years (except the expired one).
set -euo pipefail

LOG_TAG=ca
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $# -eq 1 ]] || { echo "usage: $0 DIR" >&2; exit 2; }
DIR=$(abs_dir "$1")
command -v openssl >/dev/null || die "openssl not found: apt-get install openssl"
LOCAL_SAN="DNS:localhost,IP:127.0.0.1,IP:::1"
DAYS=3650

newkey() {
        (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null)
}

# make_ca NAME CN
make_ca() {
        local name=$1 cn=$2
        [[ -s "$DIR/$name.pem" && -s "$DIR/$name.key" ]] && return 0
        newkey "$DIR/$name.key"
        openssl req -x509 -new -key "$DIR/$name.key" -sha256 -days "$DAYS" -subj "/O=transmitter tests/CN=$cn" \
                -addext "basicConstraints=critical,CA:TRUE" \
                -addext "keyUsage=critical,keyCertSign,cRLSign" \
                -addext "subjectKeyIdentifier=hash" \
                -out "$DIR/$name.pem" 2>/dev/null
}

# make_leaf NAME CA CN SAN EKU
make_leaf() {
        local name=$1 ca=$2 cn=$3 san=$4 eku=$5 ext
        [[ -s "$DIR/$name.pem" && -s "$DIR/$name.key" ]] && return 0
        newkey "$DIR/$name.key"
        ext=$(mktemp)
        {
                echo "basicConstraints=critical,CA:FALSE"
                echo "keyUsage=critical,digitalSignature,keyEncipherment"
                echo "extendedKeyUsage=$eku"
                echo "authorityKeyIdentifier=keyid"
                echo "subjectKeyIdentifier=hash"
                [[ -n "$san" ]] && echo "subjectAltName=$san"
        } >"$ext"
        openssl req -new -key "$DIR/$name.key" -subj "/O=transmitter tests/CN=$cn" -out "$DIR/$name.csr" 2>/dev/null
        openssl x509 -req -in "$DIR/$name.csr" -CA "$DIR/$ca.pem" -CAkey "$DIR/$ca.key" -CAcreateserial \
                -sha256 -days "$DAYS" -extfile "$ext" -out "$DIR/$name.pem" 2>/dev/null
        rm -f "$ext" "$DIR/$name.csr"
}

# make_expired NAME CA: a localhost server cert valid only during 2020 (needs `openssl ca`, the
# only OpenSSL 3.0 command that takes explicit dates).
make_expired() {
        local name=$1 ca=$2 work
        [[ -s "$DIR/$name.pem" && -s "$DIR/$name.key" ]] && return 0
        newkey "$DIR/$name.key"
        work=$(mktemp -d)
        : >"$work/index.txt"
        echo 1000 >"$work/serial"
        cat >"$work/ca.cnf" <<EOF
[ca]
default_ca = test
[test]
database = $work/index.txt
serial = $work/serial
new_certs_dir = $work
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
x509_extensions = leaf
[anything]
O = optional
CN = supplied
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = $LOCAL_SAN
EOF
        openssl req -new -key "$DIR/$name.key" -subj "/O=transmitter tests/CN=localhost (expired)" \
                -out "$work/req.csr" 2>/dev/null
        openssl ca -batch -config "$work/ca.cnf" -cert "$DIR/$ca.pem" -keyfile "$DIR/$ca.key" \
                -startdate 20200101000000Z -enddate 20200201000000Z -notext \
                -in "$work/req.csr" -out "$DIR/$name.pem" >"$work/log" 2>&1 ||
                { cat "$work/log" >&2; rm -rf "$work"; die "openssl ca failed"; }
        rm -rf "$work"
}

make_ca ca "transmitter test CA"
make_leaf server ca localhost "$LOCAL_SAN" serverAuth
make_leaf client ca "transmitter test client" "DNS:transmitter-client" clientAuth
make_leaf wrong-host ca wrong-host.invalid "DNS:wrong-host.invalid" serverAuth
make_expired expired-server ca
make_ca other-ca "unrelated test CA"
make_leaf other-server other-ca localhost "$LOCAL_SAN" serverAuth
rm -f "$DIR"/*.srl

for f in server client wrong-host other-server; do
        ca=ca
        [[ $f == other-server ]] && ca=other-ca
        openssl verify -CAfile "$DIR/$ca.pem" "$DIR/$f.pem" >/dev/null || die "verification of $f.pem failed"
done
chmod 644 "$DIR"/*.key # the receiver may run as any user; these are throw-away test keys
log "test CA and certificates in $DIR"
