#!/usr/bin/env bash
# Makes the certificates the amqps tests use, with openssl, offline:
#
#   scripts/make-test-certs.sh DIR
#
#   DIR/ca.pem, ca.key            test CA (CN "SpateMQ test CA")
#   DIR/server.pem, server.key    server certificate for localhost, 127.0.0.1 and ::1, signed by the CA
#   DIR/client.pem, client.key    client certificate, CN "spatemq-client", signed by the CA
#   DIR/other-ca.pem              another CA, which signed:
#   DIR/stranger.pem, stranger.key  a client certificate the test CA does not vouch for
#
# EC P-256 keys in PKCS#8 PEM, valid ten years. Idempotent: a directory that already holds every
# file is left as it is. Installs openssl (Debian package) when it is missing.
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
DIR=$1
CLIENT_CN=spatemq-client
DAYS=3650

log() { echo "[make-test-certs.sh] $*" >&2; }

if ! command -v openssl >/dev/null 2>&1; then
    log "openssl is missing: installing the Debian package"
    apt-get update -q >/dev/null
    apt-get install -y -q -o DPkg::Lock::Timeout=600 openssl >/dev/null
fi

mkdir -p "$DIR"

FILES=(ca.pem ca.key server.pem server.key client.pem client.key other-ca.pem stranger.pem stranger.key)
complete=1
for file in "${FILES[@]}"; do
    [ -s "$DIR/$file" ] || complete=0
done
if [ "$complete" = 1 ]; then
    exit 0
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

new_key() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

# new_ca NAME CN: a self-signed CA certificate NAME.pem with key NAME.key.
new_ca() {
    new_key "$WORK/$1.key"
    openssl req -x509 -new -key "$WORK/$1.key" -subj "/O=SpateMQ tests/CN=$2" -days "$DAYS" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$WORK/$1.pem" 2>/dev/null
}

# new_leaf NAME SUBJECT CA EXTENSIONS: NAME.pem/NAME.key signed by CA.
new_leaf() {
    new_key "$WORK/$1.key"
    openssl req -new -key "$WORK/$1.key" -subj "$2" -out "$WORK/$1.csr" 2>/dev/null
    printf '%s\n' "$4" >"$WORK/$1.ext"
    openssl x509 -req -in "$WORK/$1.csr" -CA "$WORK/$3.pem" -CAkey "$WORK/$3.key" -CAcreateserial \
        -days "$DAYS" -extfile "$WORK/$1.ext" -out "$WORK/$1.pem" 2>/dev/null
}

new_ca ca "SpateMQ test CA"
new_ca other-ca "SpateMQ other CA"
new_leaf server "/O=SpateMQ tests/CN=localhost" ca "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"
new_leaf client "/O=SpateMQ tests/CN=$CLIENT_CN" ca "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
new_leaf stranger "/O=SpateMQ tests/CN=stranger" other-ca "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"

# Move into place last, so an interrupted run never leaves a half set that looks complete.
for file in "${FILES[@]}"; do
    cp "$WORK/$file" "$DIR/$file.tmp"
done
for file in "${FILES[@]}"; do
    mv "$DIR/$file.tmp" "$DIR/$file"
done
chmod 600 "$DIR"/*.key
log "test certificates in $DIR (client CN $CLIENT_CN)"
