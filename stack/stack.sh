#!/usr/bin/env bash
# ordercast local infrastructure: PostgreSQL (logical WAL) -> Debezium (Kafka Connect standalone) -> Kafka (KRaft).
#
#   stack/stack.sh up       install what is missing, start what is not running, wait until the CDC pipeline runs
#   stack/stack.sh down     stop what the pid files name: Connect, then Kafka, then Postgres
#   stack/stack.sh status   each service: state, pid, port, RSS; and the connector's state
#   stack/stack.sh reset    down, then delete all data (pg, kafka, connect offsets, logs); downloaded jars are kept
#   stack/stack.sh crash S  crash one service the way real faults do (S: kafka, connect, postgres, walsender); `up` repairs
#   stack/stack.sh psql ... psql as the Postgres superuser on the stack's database (arguments go to psql)
#   stack/stack.sh prerequisites   install only the Debian packages the stack and the Rust build need (CI runs it first)
#
# No Docker: Postgres comes from Debian's postgresql-15, Kafka/Connect/Debezium are jars that Maven resolves from
# stack/pom.xml (the pinned versions live there). Everything the stack writes lives in <repo>/.stack/ (git-ignored).
#
# `up` is idempotent: a second `up` only checks (well under a second). It restarts Kafka+Connect by itself when
# stack/pom.xml changed (new versions are downloaded), and Connect when debezium/ordercast-postgres.json changed.
# It also repairs the CDC pipeline: a FAILED connector or task is restarted through Connect's REST API, and a
# replication slot that lost its WAL (max_slot_wal_keep_size) is recreated without re-emitting history, then the
# gap is announced in the cdc_gaps table so that every ordercast instance compares its subscribers with Postgres.
#
# Ports (all bound to 127.0.0.1), overridable:
#   ORDERCAST_STACK_PG_PORT                55432  postgres://ordercast:ordercast@127.0.0.1:55432/ordercast (TLS too)
#   ORDERCAST_STACK_KAFKA_PORT             19092  bootstrap servers 127.0.0.1:19092 (PLAINTEXT)
#   ORDERCAST_STACK_KAFKA_SASL_PORT        19094  bootstrap servers 127.0.0.1:19094 (SASL_SSL, SCRAM-SHA-512 or PLAIN,
#                                                 user ordercast, password ordercast)
#   ORDERCAST_STACK_KAFKA_CONTROLLER_PORT  19093  KRaft controller listener
#   ORDERCAST_STACK_CONNECT_PORT           18083  Kafka Connect REST
# (ORDERCAST_KAFKA_* belongs to the ordercast binary: it sets librdkafka properties.)
#
# TLS: a CA generated once into .stack/tls/ca.pem signs the certificate (DNS localhost, IP 127.0.0.1) that Postgres
# and Kafka's SASL_SSL listener present; clients verify them with that CA.
#
# WAL cap: ORDERCAST_PG_MAX_SLOT_WAL_KEEP_SIZE (default 2GB) is the most WAL the replication slot may hold while
# Debezium is not reading; beyond it Postgres invalidates the slot instead of filling the disk. Applied on every `up`.
set -euo pipefail

PG_MAJOR=15
PG_PORT="${ORDERCAST_STACK_PG_PORT:-55432}"
KAFKA_PORT="${ORDERCAST_STACK_KAFKA_PORT:-19092}"
KAFKA_SASL_PORT="${ORDERCAST_STACK_KAFKA_SASL_PORT:-19094}"
CONTROLLER_PORT="${ORDERCAST_STACK_KAFKA_CONTROLLER_PORT:-19093}"
CONNECT_PORT="${ORDERCAST_STACK_CONNECT_PORT:-18083}"
PG_MAX_SLOT_WAL_KEEP_SIZE="${ORDERCAST_PG_MAX_SLOT_WAL_KEEP_SIZE:-2GB}"
HOST=127.0.0.1
if ! [[ "$PG_MAX_SLOT_WAL_KEEP_SIZE" =~ ^(-1|[0-9]+(kB|MB|GB|TB)?)$ ]]; then
  echo "[stack] invalid ORDERCAST_PG_MAX_SLOT_WAL_KEEP_SIZE '$PG_MAX_SLOT_WAL_KEEP_SIZE' (want e.g. 2GB, 512MB, or -1 for no cap)" >&2
  exit 2
fi
for _port in "$PG_PORT" "$KAFKA_PORT" "$KAFKA_SASL_PORT" "$CONTROLLER_PORT" "$CONNECT_PORT"; do
  if ! [[ "$_port" =~ ^[0-9]+$ ]] || ((_port < 1024 || _port > 65535)); then
    echo "[stack] invalid port '$_port' in an ORDERCAST_STACK_*_PORT variable (want 1024-65535)" >&2
    exit 2
  fi
done

DB_NAME=ordercast
DB_USER=ordercast
DB_PASSWORD=ordercast
CDC_USER=ordercast_cdc
CDC_PASSWORD=ordercast_cdc
KAFKA_SASL_USER=ordercast
KAFKA_SASL_PASSWORD=ordercast
PUBLICATION=ordercast_cdc
SLOT=ordercast_debezium
CONNECTOR=ordercast-postgres

KAFKA_HEAP="-Xms256m -Xmx512m"
CONNECT_HEAP="-Xms256m -Xmx512m"

STACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="$(mkdir -p "$STACK_DIR/../.stack" && cd "$STACK_DIR/../.stack" && pwd)"
LIB="$STATE/lib"
PG_DIR="$STATE/pg"
PGDATA="$PG_DIR/data"
PG_SOCKET="$PG_DIR/socket"
KAFKA_DIR="$STATE/kafka"
CONNECT_DIR="$STATE/connect"
LOGS="$STATE/logs"
RUN="$STATE/run"
TLS="$STATE/tls"

POM="$STACK_DIR/pom.xml"
LOG4J2="$STACK_DIR/log4j2.yaml"
CONNECTOR_JSON="$STACK_DIR/debezium/$CONNECTOR.json"

pom_prop() { sed -n "s:.*<$1>\(.*\)</$1>.*:\1:p" "$POM" | head -n1; }
KAFKA_VERSION="$(pom_prop kafka.version)"
DEBEZIUM_VERSION="$(pom_prop debezium.version)"

PG_BIN="/usr/lib/postgresql/$PG_MAJOR/bin"

# ---------------------------------------------------------------------------------------------------- helpers

log() { printf '[stack] %s\n' "$*"; }
now() { date +%s.%N; }
since() { awk -v s="$1" -v e="$(now)" 'BEGIN { printf "%.1f", e - s }'; }

# fail STEP LOGFILE MESSAGE: name the step, show the tail of the service's log, exit non-zero
fail() {
  local step=$1 logfile=$2 msg=$3
  log "FAILED at step '$step': $msg"
  if [[ -n "$logfile" && -s "$logfile" ]]; then
    log "---- last 40 lines of $logfile ----"
    tail -n 40 "$logfile" | sed 's/^/  | /'
    log "---- end of $logfile ----"
  fi
  exit 1
}

if [[ $EUID -eq 0 ]]; then
  PG_OS_USER=postgres
  as_pg() { (cd "$PG_DIR" && runuser -u postgres -- "$@" 9>&-); }
else
  PG_OS_USER="$(id -un)"
  as_pg() { (cd "$PG_DIR" && "$@" 9>&-); }
fi

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

port_owner() { # "pid N (cmd)" of whoever listens on the port, if ss can tell
  local pid
  pid="$(ss -ltnpH "sport = :$1" 2>/dev/null | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n1 || true)"
  if [[ -n "$pid" ]]; then
    printf 'pid %s (%s)' "$pid" "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-120)"
  else
    printf 'an unknown process'
  fi
}

# ensure_port_free STEP PORT: a port we are about to bind must not be taken by something else
ensure_port_free() {
  if port_open "$2"; then
    fail "$1" "" "port $HOST:$2 is already in use by $(port_owner "$2"); stop it or pick another port (see the ORDERCAST_STACK_*_PORT variables at the top of stack/stack.sh)"
  fi
}

# the marker that identifies our JVMs on their command line (and in /proc/PID/cmdline)
java_marker() { printf -- '-Dordercast.stack=%s/%s' "$STATE" "$1"; }

# live_pid SERVICE: print the pid from run/SERVICE.pid if that process is alive and is ours; drop stale pid files
live_pid() {
  local svc=$1 file="$RUN/$1.pid" pid needle
  [[ -f "$file" ]] || return 0
  pid="$(tr -dc '0-9' <"$file")"
  case "$svc" in
    postgres) needle="$PGDATA" ;;
    *) needle="$(java_marker "$svc")" ;;
  esac
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$needle"; then
    printf '%s' "$pid"
  else
    log "$svc: removing stale pid file $file (pid ${pid:-?} is gone)" >&2
    rm -f "$file"
  fi
}

rss_mb() { awk '/^VmRSS:/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || printf '?'; }

# wait_until STEP WHAT TIMEOUT LOGFILE PID CMD...: poll CMD until it succeeds; fail early if PID dies
wait_until() {
  local step=$1 what=$2 timeout=$3 logfile=$4 pid=$5
  shift 5
  local t0 deadline
  t0="$(now)"
  deadline=$((SECONDS + timeout))
  rm -f "$RUN/failure-detail"
  printf '[stack] %s: waiting for %s ... ' "$step" "$what"
  local rc
  while true; do
    rc=0
    "$@" >/dev/null 2>&1 || rc=$?
    ((rc == 0)) && break
    if ((rc == 99)); then # the check saw a state that will not get better by waiting
      printf 'failed after %ss\n' "$(since "$t0")"
      if [[ -s "$RUN/failure-detail" ]]; then
        sed 's/\\n/\n/g; s/\\t/  /g; s/^/  | /' "$RUN/failure-detail" | head -n 60
      fi
      fail "$step" "$logfile" "gave up waiting for $what: it reported a permanent failure (details above)"
    fi
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
      printf 'process died after %ss\n' "$(since "$t0")"
      fail "$step" "$logfile" "the process (pid $pid) exited while waiting for $what"
    fi
    if ((SECONDS >= deadline)); then
      printf 'timed out after %ss\n' "$(since "$t0")"
      fail "$step" "$logfile" "gave up waiting for $what after ${timeout}s"
    fi
    sleep 0.2
  done
  printf 'ready in %ss\n' "$(since "$t0")"
}

APT_UPDATED=0
apt_install() {
  [[ $EUID -eq 0 ]] || fail prerequisites "" "missing $*; install with: sudo apt-get install -y $*"
  if ((APT_UPDATED == 0)); then
    log "prerequisites: apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    APT_UPDATED=1
  fi
  log "prerequisites: apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Options::=--force-confold "$@" >/dev/null
}

http_get() { curl -fsS --max-time 5 "http://$HOST:$CONNECT_PORT$1"; }

# "CONNECTOR_STATE TASK_STATE" from the Connect REST API ("- -" when unknown)
connector_states() {
  local body states
  body="$(http_get "/connectors/$CONNECTOR/status" 2>/dev/null || true)"
  states="$(printf '%s' "$body" | grep -o '"state":"[A-Z_]*"' | sed 's/"state":"\(.*\)"/\1/' | tr '\n' ' ' || true)"
  read -r c t _ <<<"$states $(printf -- '- -')"
  printf '%s %s' "${c:--}" "${t:--}"
}

connector_running() { [[ "$(connector_states)" == "RUNNING RUNNING" ]]; }

# the root cause of a FAILED task: the last "Caused by" of its trace, or its first line
failure_cause() {
  local trace
  trace="$(http_get "/connectors/$CONNECTOR/status" 2>/dev/null | grep -o '"trace":"[^"]*' | head -n1 | cut -c10- | sed 's/\\n/\n/g; s/\\t/ /g' || true)"
  { printf '%s\n' "$trace" | grep '^Caused by' | tail -n1 || true; } | grep . || printf '%s\n' "$trace" | head -n1 | cut -c1-300
}

connector_check() { # like connector_running, but stop waiting at once if the connector or its task FAILED
  local s
  s="$(connector_states)"
  if [[ "$s" == *FAILED* ]]; then
    { echo "connector/task state: $s; GET /connectors/$CONNECTOR/status says:"; http_get "/connectors/$CONNECTOR/status" || true; echo; } >"$RUN/failure-detail" 2>&1
    return 99
  fi
  [[ "$s" == "RUNNING RUNNING" ]]
}

# ---------------------------------------------------------------------------------------------------- steps

# Debian packages the Rust build needs: rdkafka builds librdkafka with TLS and SASL against the system's OpenSSL.
step_build_prerequisites() {
  local missing=() pkg
  for pkg in libssl-dev pkg-config openssl; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) || apt_install "${missing[@]}"
}

step_prerequisites() {
  step_build_prerequisites
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  command -v curl >/dev/null || apt_install curl
  command -v ss >/dev/null || apt_install iproute2
  if [[ ! -x "$PG_BIN/initdb" ]]; then
    if [[ $EUID -eq 0 ]]; then
      # keep Debian from creating and starting its own "main" cluster on 5432
      mkdir -p /etc/postgresql-common
      if [[ -f /etc/postgresql-common/createcluster.conf ]] &&
        grep -qE '^[[:space:]]*#?[[:space:]]*create_main_cluster' /etc/postgresql-common/createcluster.conf; then
        sed -i -E 's/^[[:space:]]*#?[[:space:]]*create_main_cluster.*/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf
      else
        echo 'create_main_cluster = false' >>/etc/postgresql-common/createcluster.conf
      fi
    fi
    apt_install "postgresql-$PG_MAJOR" "postgresql-client-$PG_MAJOR"
  fi
  [[ -x "$PG_BIN/initdb" ]] || fail prerequisites "" "$PG_BIN/initdb is still missing"
}

step_download() {
  local marker="$LIB/.versions" want t0
  want="kafka=$KAFKA_VERSION debezium=$DEBEZIUM_VERSION pom-sha256=$(sha256sum "$POM" | cut -d' ' -f1)"
  if [[ -f "$marker" && "$(cat "$marker")" == "$want" ]] &&
    compgen -G "$LIB/kafka/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null &&
    compgen -G "$LIB/connect-plugins/debezium-connector-postgres/debezium-connector-postgres-$DEBEZIUM_VERSION.jar" >/dev/null; then
    log "download: Kafka $KAFKA_VERSION + Debezium $DEBEZIUM_VERSION already in $LIB (nothing to download)"
    return
  fi
  if [[ -n "$(live_pid connect)$(live_pid kafka)" ]]; then
    log "download: stack/pom.xml changed since the running Kafka/Connect were started: stopping them to upgrade"
    stop_java connect 30
    stop_java kafka 60
  fi
  command -v mvn >/dev/null || apt_install maven
  t0="$(now)"
  log "download: resolving Kafka $KAFKA_VERSION, Connect, Debezium $DEBEZIUM_VERSION with Maven (stack/pom.xml) ..."
  rm -rf "$LIB"
  mkdir -p "$LIB" "$LOGS"
  if ! mvn -q -B -ntp -f "$POM" dependency:copy-dependencies -DoutputDirectory="$LIB/kafka" >"$LOGS/maven.log" 2>&1 ||
    ! mvn -q -B -ntp -f "$POM" dependency:unpack@debezium-plugin -Dstack.root="$STATE" >>"$LOGS/maven.log" 2>&1; then
    rm -rf "$LIB"
    fail download "$LOGS/maven.log" "Maven could not resolve the jars"
  fi
  printf '%s\n' "$want" >"$marker"
  log "download: $(find "$LIB/kafka" -name '*.jar' | wc -l) jars + $(find "$LIB/connect-plugins" -name '*.jar' | wc -l) plugin jars in $(since "$t0")s"
}

# A CA made once (ten years), and a server certificate it signs for localhost and 127.0.0.1 that Postgres and
# Kafka's SASL_SSL listener present. Clients trust .stack/tls/ca.pem. Made again only when a file is missing, the
# certificate no longer verifies against the CA, or it expires within 30 days.
step_tls() {
  local t0
  mkdir -p "$TLS"
  chmod 755 "$TLS"
  if [[ -s "$TLS/ca.pem" && -s "$TLS/ca.key" && -s "$TLS/server.pem" && -s "$TLS/server.key" ]] &&
    openssl verify -CAfile "$TLS/ca.pem" "$TLS/server.pem" >/dev/null 2>&1 &&
    openssl x509 -checkend $((30 * 86400)) -noout -in "$TLS/server.pem" >/dev/null 2>&1; then
    log "tls: CA $TLS/ca.pem and the server certificate are in place"
    return
  fi
  t0="$(now)"
  if ! [[ -s "$TLS/ca.pem" && -s "$TLS/ca.key" ]] || ! openssl x509 -checkend $((30 * 86400)) -noout -in "$TLS/ca.pem" >/dev/null 2>&1; then
    openssl req -x509 -new -newkey rsa:2048 -nodes -sha256 -days 3650 -subj "/CN=ordercast local stack CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout "$TLS/ca.key" -out "$TLS/ca.pem" >"$TLS/openssl.log" 2>&1 || fail tls "$TLS/openssl.log" "could not create the CA"
    chmod 600 "$TLS/ca.key"
  fi
  openssl req -new -newkey rsa:2048 -nodes -sha256 -subj "/CN=localhost" -keyout "$TLS/server.key" -out "$TLS/server.csr" \
    >>"$TLS/openssl.log" 2>&1 || fail tls "$TLS/openssl.log" "could not create the server key"
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth" "subjectAltName=DNS:localhost,IP:$HOST" >"$TLS/server.ext"
  openssl x509 -req -sha256 -days 825 -in "$TLS/server.csr" -CA "$TLS/ca.pem" -CAkey "$TLS/ca.key" -CAcreateserial \
    -extfile "$TLS/server.ext" -out "$TLS/server.pem" >>"$TLS/openssl.log" 2>&1 || fail tls "$TLS/openssl.log" "could not sign the server certificate"
  chmod 600 "$TLS/server.key"
  rm -f "$TLS/server.csr"
  log "tls: created CA $TLS/ca.pem and a server certificate for localhost and $HOST in $(since "$t0")s"
}

pg_running() { as_pg "$PG_BIN/pg_ctl" status -D "$PGDATA" >/dev/null 2>&1; }

psql_super() { as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCKET" -p "$PG_PORT" -U postgres "$@"; }

sql_value() { psql_super -d "$DB_NAME" -At -c "$1"; } # one value (or nothing) from the stack's database

publication_tables() {
  local tables
  tables="$(sql_value "SELECT string_agg(tablename, ', ' ORDER BY tablename) FROM pg_publication_tables WHERE pubname = '$PUBLICATION'" 2>/dev/null || true)"
  printf 'tables: %s' "${tables:-none yet (the migrations add them)}"
}

# write_pg_config: the stack's settings (ordercast.conf) and access rules; true when either file changed
write_pg_config() {
  local before
  before="$(cat "$PGDATA/ordercast.conf" "$PGDATA/pg_hba.conf" "$PG_DIR/tls/server.pem" 2>/dev/null | sha256sum)"
  # Postgres reads its key only if the server's OS user owns it and nobody else can
  install -d -m 700 -o "$PG_OS_USER" "$PG_DIR/tls"
  install -m 644 -o "$PG_OS_USER" "$TLS/server.pem" "$PG_DIR/tls/server.pem"
  install -m 600 -o "$PG_OS_USER" "$TLS/server.key" "$PG_DIR/tls/server.key"
  cat >"$PGDATA/ordercast.conf" <<EOF
# generated by stack/stack.sh on every start: edit the script, not this file
listen_addresses = '$HOST'
port = $PG_PORT
unix_socket_directories = '$PG_SOCKET'
unix_socket_permissions = 0700
max_connections = 200
wal_level = logical
max_wal_senders = 10
max_replication_slots = 10
# the most WAL the replication slot may hold while Debezium does not read it; beyond it the slot is
# invalidated (and stack.sh up recovers) instead of the disk filling up
max_slot_wal_keep_size = '$PG_MAX_SLOT_WAL_KEEP_SIZE'
# TLS beside plaintext: sslmode=verify-full with sslrootcert=.stack/tls/ca.pem verifies this certificate
ssl = on
ssl_cert_file = '$PG_DIR/tls/server.pem'
ssl_key_file = '$PG_DIR/tls/server.key'
ssl_min_protocol_version = 'TLSv1.2'
timezone = 'UTC'
log_timezone = 'UTC'
log_line_prefix = '%m [%p] %q%u@%d '
EOF
  cat >"$PGDATA/pg_hba.conf" <<EOF
# generated by stack/stack.sh on every start
# TYPE  DATABASE     USER           ADDRESS        METHOD
local   all          all                           trust
host    all          all            $HOST/32   scram-sha-256
host    replication  $CDC_USER  $HOST/32   scram-sha-256
EOF
  grep -q "^include_if_exists = 'ordercast.conf'" "$PGDATA/postgresql.conf" ||
    echo "include_if_exists = 'ordercast.conf'" >>"$PGDATA/postgresql.conf"
  chown "$PG_OS_USER" "$PGDATA/ordercast.conf" "$PGDATA/pg_hba.conf"
  chmod 600 "$PGDATA/ordercast.conf" "$PGDATA/pg_hba.conf"
  [[ "$(cat "$PGDATA/ordercast.conf" "$PGDATA/pg_hba.conf" "$PG_DIR/tls/server.pem" | sha256sum)" != "$before" ]]
}

step_postgres() {
  local t0 pid
  mkdir -p "$PG_DIR" "$LOGS" "$RUN"
  chown "$PG_OS_USER" "$PG_DIR"
  chmod 700 "$PG_DIR"
  if ((${#PG_SOCKET} + 16 > 107)); then
    fail postgres "" "the unix socket path $PG_SOCKET/.s.PGSQL.$PG_PORT is longer than the 107 bytes Linux allows; move the repo to a shorter path"
  fi
  if ! as_pg test -w "$PG_DIR"; then
    fail postgres "" "the OS user '$PG_OS_USER' cannot write $PG_DIR (is every parent directory of the repo traversable by it?)"
  fi
  touch "$LOGS/postgres.log"
  chown "$PG_OS_USER" "$LOGS/postgres.log"

  if [[ ! -f "$PGDATA/PG_VERSION" ]]; then
    t0="$(now)"
    rm -rf "$PGDATA"
    if ! as_pg "$PG_BIN/initdb" -D "$PGDATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
      --encoding=UTF8 --locale=C.UTF-8 >"$LOGS/postgres-initdb.log" 2>&1; then
      fail postgres "$LOGS/postgres-initdb.log" "initdb failed"
    fi
    log "postgres: initdb $PGDATA (as OS user $PG_OS_USER) in $(since "$t0")s"
  fi

  pid="$(live_pid postgres)"
  if pg_running; then
    pid="$(head -n1 "$PGDATA/postmaster.pid")"
    echo "$pid" >"$RUN/postgres.pid"
    port_open "$PG_PORT" || fail postgres "$LOGS/postgres.log" "postgres (pid $pid) runs but does not listen on $HOST:$PG_PORT; the port changed? run 'stack/stack.sh down' first"
    log "postgres: already running (pid $pid) on $HOST:$PG_PORT"
    if write_pg_config; then
      as_pg "$PG_BIN/pg_ctl" reload -D "$PGDATA" >/dev/null 2>&1 || fail postgres "$LOGS/postgres.log" "pg_ctl reload failed"
      log "postgres: settings or certificate changed (max_slot_wal_keep_size=$PG_MAX_SLOT_WAL_KEEP_SIZE, ssl=on): reloaded; port and wal_level changes need 'stack/stack.sh down' first"
    fi
  else
    ensure_port_free postgres "$PG_PORT"
    rm -f "$RUN/postgres.pid"
    install -d -m 700 -o "$PG_OS_USER" "$PG_SOCKET"
    write_pg_config || true
    t0="$(now)"
    log "postgres: starting $PG_MAJOR on $HOST:$PG_PORT (log $LOGS/postgres.log)"
    as_pg "$PG_BIN/pg_ctl" start -D "$PGDATA" -l "$LOGS/postgres.log" -W >/dev/null 2>&1 ||
      fail postgres "$LOGS/postgres.log" "pg_ctl start failed"
    wait_until postgres "pg_isready on $HOST:$PG_PORT" 60 "$LOGS/postgres.log" "" \
      "$PG_BIN/pg_isready" -q -h "$HOST" -p "$PG_PORT" -d postgres
    pid="$(head -n1 "$PGDATA/postmaster.pid")"
    echo "$pid" >"$RUN/postgres.pid"
    log "postgres: started (pid $pid) in $(since "$t0")s"
  fi

  # idempotent bootstrap: roles, database, grants, publication
  t0="$(now)"
  psql_super -d postgres >>"$LOGS/postgres-bootstrap.log" 2>&1 <<SQL || fail postgres "$LOGS/postgres-bootstrap.log" "bootstrap SQL (roles/database) failed"
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB_USER') THEN
    CREATE ROLE $DB_USER;
  END IF;
  ALTER ROLE $DB_USER WITH LOGIN CREATEDB PASSWORD '$DB_PASSWORD';
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$CDC_USER') THEN
    CREATE ROLE $CDC_USER;
  END IF;
  ALTER ROLE $CDC_USER WITH LOGIN REPLICATION PASSWORD '$CDC_PASSWORD';
END
\$\$;
SELECT 'CREATE DATABASE $DB_NAME OWNER $DB_USER' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DB_NAME')
\gexec
SQL
  psql_super -d "$DB_NAME" >>"$LOGS/postgres-bootstrap.log" 2>&1 <<SQL || fail postgres "$LOGS/postgres-bootstrap.log" "bootstrap SQL (grants/publication) failed"
GRANT CONNECT ON DATABASE $DB_NAME TO $CDC_USER;
GRANT USAGE ON SCHEMA public TO $CDC_USER;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO $CDC_USER;
ALTER DEFAULT PRIVILEGES FOR ROLE $DB_USER IN SCHEMA public GRANT SELECT ON TABLES TO $CDC_USER;
-- The publication belongs to the application's role: ordercast's migrations choose its tables (only what a
-- consumer reads) and it publishes inserts only, so pruning history never reaches Kafka. One that an older
-- stack.sh created for the whole schema is replaced in one transaction.
DO \$\$
BEGIN
  IF EXISTS (SELECT FROM pg_publication p WHERE p.pubname = '$PUBLICATION'
             AND (p.puballtables OR EXISTS (SELECT FROM pg_publication_namespace n WHERE n.pnpubid = p.oid))) THEN
    DROP PUBLICATION $PUBLICATION;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_publication WHERE pubname = '$PUBLICATION') THEN
    CREATE PUBLICATION $PUBLICATION WITH (publish = 'insert');
    IF to_regclass('public.order_versions') IS NOT NULL THEN
      ALTER PUBLICATION $PUBLICATION ADD TABLE public.order_versions;
    END IF;
    IF to_regclass('public.cdc_gaps') IS NOT NULL THEN
      ALTER PUBLICATION $PUBLICATION ADD TABLE public.cdc_gaps;
    END IF;
  END IF;
  ALTER PUBLICATION $PUBLICATION OWNER TO $DB_USER;
END
\$\$;
SQL
  log "postgres: roles $DB_USER/$CDC_USER, database $DB_NAME, publication $PUBLICATION ($(publication_tables)) ensured in $(since "$t0")s"
}

kafka_cp() { printf '%s/kafka/*' "$LIB"; }

write_kafka_config() {
  mkdir -p "$KAFKA_DIR/data"
  cat "$TLS/server.key" "$TLS/server.pem" >"$KAFKA_DIR/keystore.pem"
  chmod 600 "$KAFKA_DIR/keystore.pem"
  cat >"$KAFKA_DIR/server.properties" <<EOF
# generated by stack/stack.sh on every start: edit the script, not this file
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,SASL_SSL://$HOST:$KAFKA_SASL_PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT,SASL_SSL://$HOST:$KAFKA_SASL_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL
# the secured listener, as managed Kafka offers it: TLS (certificate from .stack/tls/ca.pem) and SASL, SCRAM or PLAIN
sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$KAFKA_SASL_USER="$KAFKA_SASL_PASSWORD";
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$KAFKA_DIR/keystore.pem
log.dirs=$KAFKA_DIR/data
num.partitions=3
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true
log.retention.hours=168
log.segment.bytes=104857600
EOF
}

# start_java SERVICE HEAP MAINCLASS ARGS...: background JVM with nohup, own session, pid file, log file
start_java() {
  local svc=$1 heap=$2
  shift 2
  local -a opts
  read -r -a opts <<<"$heap"
  opts+=(-XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$LOG4J2" "-Dkafka.logs.dir=$LOGS" "$(java_marker "$svc")")
  : >>"$LOGS/$svc.log"
  printf '\n===== %s starting %s at %s =====\n' "$svc" "$1" "$(date -Is)" >>"$LOGS/$svc.log"
  # own session (no terminal signals), no inherited lock fd (9), output to the service log
  nohup setsid java "${opts[@]}" -cp "$(kafka_cp)" "$@" >>"$LOGS/$svc.log" 2>&1 </dev/null 9>&- &
  echo $! >"$RUN/$svc.pid"
}

kafka_config_sha() { cat "$KAFKA_DIR/server.properties" "$KAFKA_DIR/keystore.pem" | sha256sum | cut -d' ' -f1; }

kafka_metadata_ok() {
  java -Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Dlog4j2.configurationFile="$LOG4J2" -cp "$(kafka_cp)" \
    org.apache.kafka.tools.TopicCommand --bootstrap-server "$HOST:$KAFKA_PORT" --list >/dev/null 2>&1
}

step_kafka() {
  local t0 pid cid
  mkdir -p "$KAFKA_DIR" "$LOGS" "$RUN"
  pid="$(live_pid kafka)"
  write_kafka_config
  # the broker reads its settings and its certificate only at start: restart it when either changed
  if [[ -n "$pid" ]] && [[ "$(cat "$RUN/kafka.config.sha256" 2>/dev/null)" != "$(kafka_config_sha)" ]]; then
    log "kafka: its settings or certificate changed since it started (e.g. the SASL_SSL listener is new): restarting Kafka and Connect"
    stop_java connect 30
    stop_java kafka 60
    pid=""
  fi
  if [[ -n "$pid" ]]; then
    if port_open "$KAFKA_PORT"; then
      log "kafka: already running (pid $pid) on $HOST:$KAFKA_PORT, SASL_SSL on $HOST:$KAFKA_SASL_PORT"
      return
    fi
    # still starting (an earlier `up` was interrupted), or started on another port
    wait_until kafka "$HOST:$KAFKA_PORT (pid $pid runs already; if you changed the port, run 'stack/stack.sh down' first)" 60 \
      "$LOGS/kafka.log" "$pid" port_open "$KAFKA_PORT"
    wait_until kafka "metadata (TopicCommand --list)" 90 "$LOGS/kafka.log" "$pid" kafka_metadata_ok
    return
  fi
  ensure_port_free kafka "$KAFKA_PORT"
  ensure_port_free kafka "$KAFKA_SASL_PORT"
  ensure_port_free kafka "$CONTROLLER_PORT"
  if [[ ! -f "$KAFKA_DIR/data/meta.properties" ]]; then
    t0="$(now)"
    # log4j2 also writes to stdout: the id is the last line
    cid="$(java -cp "$(kafka_cp)" -Dlog4j2.configurationFile="$LOG4J2" kafka.tools.StorageTool random-uuid 2>>"$LOGS/kafka-format.log" | tail -n1)"
    [[ "$cid" =~ ^[A-Za-z0-9_-]{22}$ ]] || fail kafka "$LOGS/kafka-format.log" "could not generate a cluster id (got '$cid')"
    java -cp "$(kafka_cp)" -Dlog4j2.configurationFile="$LOG4J2" kafka.tools.StorageTool format \
      --cluster-id "$cid" --config "$KAFKA_DIR/server.properties" >>"$LOGS/kafka-format.log" 2>&1 ||
      fail kafka "$LOGS/kafka-format.log" "kafka-storage format failed"
    log "kafka: formatted KRaft storage (cluster id $cid) in $(since "$t0")s"
  fi
  t0="$(now)"
  log "kafka: starting Kafka $KAFKA_VERSION (KRaft broker+controller) on $HOST:$KAFKA_PORT, SASL_SSL $HOST:$KAFKA_SASL_PORT, controller $HOST:$CONTROLLER_PORT (log $LOGS/kafka.log)"
  kafka_config_sha >"$RUN/kafka.config.sha256"
  start_java kafka "$KAFKA_HEAP" kafka.Kafka "$KAFKA_DIR/server.properties"
  pid="$(cat "$RUN/kafka.pid")"
  wait_until kafka "$HOST:$KAFKA_PORT" 90 "$LOGS/kafka.log" "$pid" port_open "$KAFKA_PORT"
  wait_until kafka "metadata (TopicCommand --list)" 90 "$LOGS/kafka.log" "$pid" kafka_metadata_ok
  # SCRAM credentials live in the cluster metadata: upserted on every start, so a stack formatted before the
  # SASL_SSL listener existed gets its user too
  java -Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Dlog4j2.configurationFile="$LOG4J2" -cp "$(kafka_cp)" \
    kafka.admin.ConfigCommand --bootstrap-server "$HOST:$KAFKA_PORT" --alter --entity-type users --entity-name "$KAFKA_SASL_USER" \
    --add-config "SCRAM-SHA-512=[iterations=8192,password=$KAFKA_SASL_PASSWORD]" >>"$LOGS/kafka-scram.log" 2>&1 ||
    fail kafka "$LOGS/kafka-scram.log" "could not create the SCRAM user $KAFKA_SASL_USER"
  log "kafka: SCRAM-SHA-512 user $KAFKA_SASL_USER ensured"
  log "kafka: started (pid $pid) in $(since "$t0")s"
}

write_connect_config() {
  mkdir -p "$CONNECT_DIR"
  cat >"$CONNECT_DIR/worker.properties" <<EOF
# generated by stack/stack.sh on every start: edit the script, not this file
bootstrap.servers=$HOST:$KAFKA_PORT
listeners=http://$HOST:$CONNECT_PORT
rest.advertised.host.name=$HOST
rest.advertised.port=$CONNECT_PORT
plugin.path=$LIB/connect-plugins
# Kafka's and Debezium's jars all carry ServiceLoader manifests: skips ~8s of reflective class scanning
plugin.discovery=service_load
offset.storage.file.filename=$CONNECT_DIR/offsets.dat
offset.flush.interval.ms=1000
key.converter=org.apache.kafka.connect.json.JsonConverter
key.converter.schemas.enable=false
value.converter=org.apache.kafka.connect.json.JsonConverter
value.converter.schemas.enable=false
config.providers=env
config.providers.env.class=org.apache.kafka.common.config.provider.EnvVarConfigProvider
config.providers.env.param.allowlist.pattern=^ORDERCAST_CDC_.*
connector.client.config.override.policy=All
EOF
}

step_connect() {
  local t0 pid s
  mkdir -p "$CONNECT_DIR" "$LOGS" "$RUN"
  pid="$(live_pid connect)"
  # standalone Connect reads the connector config only at start: restart it when the checked-in file changed
  if [[ -n "$pid" ]] && [[ "$(cat "$RUN/connect.config.sha256" 2>/dev/null)" != "$(sha256sum <"$CONNECTOR_JSON")" ]]; then
    log "connect: $CONNECTOR_JSON changed since Connect started: restarting Connect"
    stop_java connect 30
    pid=""
  fi
  if [[ -n "$pid" ]]; then
    port_open "$CONNECT_PORT" ||
      wait_until connect "REST API on $HOST:$CONNECT_PORT (pid $pid runs already; if you changed the port, run 'stack/stack.sh down' first)" 60 \
        "$LOGS/connect.log" "$pid" http_get /
    s="$(connector_states)"
    if [[ "$s" == "RUNNING RUNNING" ]]; then
      log "connect: already running (pid $pid) on $HOST:$CONNECT_PORT, connector $CONNECTOR RUNNING"
      return
    fi
    if [[ "$s" == *FAILED* ]]; then
      log "connect: connector $CONNECTOR is FAILED (connector ${s% *}, task 0 ${s#* }): $(failure_cause)"
      log "connect: restarting the failed connector and task (POST /connectors/$CONNECTOR/restart?includeTasks=true&onlyFailed=true)"
      curl -fsS --max-time 10 -X POST "http://$HOST:$CONNECT_PORT/connectors/$CONNECTOR/restart?includeTasks=true&onlyFailed=true" >/dev/null ||
        fail connect "$LOGS/connect.log" "could not restart connector $CONNECTOR"
      wait_until connect "connector $CONNECTOR and its task RUNNING again" 120 "$LOGS/connect.log" "$pid" connector_check
      wait_until connect "Debezium streaming from slot $SLOT" 60 "$LOGS/connect.log" "$pid" streaming_check
      log "connect: connector $CONNECTOR healed: RUNNING and streaming"
      return
    fi
    wait_until connect "connector $CONNECTOR and its task RUNNING" 120 "$LOGS/connect.log" "$pid" connector_check
    return
  fi
  ensure_port_free connect "$CONNECT_PORT"
  write_connect_config
  # the checked-in connector config reads the database settings from these (${env:...} placeholders)
  export ORDERCAST_CDC_DB_HOST="$HOST" ORDERCAST_CDC_DB_PORT="$PG_PORT" ORDERCAST_CDC_DB_NAME="$DB_NAME" \
    ORDERCAST_CDC_DB_USER="$CDC_USER" ORDERCAST_CDC_DB_PASSWORD="$CDC_PASSWORD" \
    ORDERCAST_CDC_DB_SSLMODE=verify-full ORDERCAST_CDC_DB_SSLROOTCERT="$TLS/ca.pem"
  t0="$(now)"
  log "connect: starting Kafka Connect standalone + Debezium $DEBEZIUM_VERSION, REST on $HOST:$CONNECT_PORT (log $LOGS/connect.log)"
  sha256sum <"$CONNECTOR_JSON" >"$RUN/connect.config.sha256"
  start_java connect "$CONNECT_HEAP" org.apache.kafka.connect.cli.ConnectStandalone "$CONNECT_DIR/worker.properties" "$CONNECTOR_JSON"
  pid="$(cat "$RUN/connect.pid")"
  wait_until connect "REST API on $HOST:$CONNECT_PORT" 120 "$LOGS/connect.log" "$pid" http_get /
  wait_until connect "connector $CONNECTOR and its task RUNNING" 120 "$LOGS/connect.log" "$pid" connector_check
  log "connect: started (pid $pid) in $(since "$t0")s"
}

# The replication slot holds the WAL Debezium has not read yet, up to max_slot_wal_keep_size. Past that cap
# Postgres invalidates the slot (wal_status 'lost'): the changes committed since Debezium last read are gone for
# good, and Debezium cannot stream from that slot again. Recovery: stop Connect, drop the slot, forget the
# connector's offsets, and let Connect create a new slot (snapshot.mode=no_data: no history is re-emitted). The
# hole is real, so it is announced through cdc_gaps once Debezium streams again (step_announce_gap).
step_slot() {
  local status offsets="$CONNECT_DIR/offsets.dat"
  status="$(sql_value "SELECT wal_status FROM pg_replication_slots WHERE slot_name = '$SLOT'")" ||
    fail slot "$LOGS/postgres.log" "could not read pg_replication_slots"
  if [[ "$status" == lost ]]; then
    log "slot: replication slot $SLOT is invalidated (wal_status=lost): Debezium did not read it before it held more WAL than max_slot_wal_keep_size allows; the changes committed since then were never captured"
  elif [[ -z "$status" && -s "$offsets" ]]; then
    log "slot: replication slot $SLOT is gone but the connector has offsets: the changes committed since it was dropped were never captured"
  else
    return 0
  fi
  log "slot: recovering: stop Connect, drop the slot, forget the connector's offsets, start Connect on a new slot without a snapshot, then announce the gap"
  : >"$RUN/gap-pending"
  stop_java connect 30
  if [[ -n "$status" ]]; then
    sql_value "SELECT pg_drop_replication_slot('$SLOT')" >/dev/null || fail slot "$LOGS/postgres.log" "could not drop slot $SLOT"
    log "slot: dropped $SLOT"
  fi
  rm -f "$offsets"
  log "slot: removed the connector's offsets ($offsets)"
}

slot_active() { [[ "$(sql_value "SELECT active FROM pg_replication_slots WHERE slot_name = '$SLOT'")" == t ]]; }

streaming_check() { # the task is RUNNING and holds the slot; 99 (give up) if it failed again
  connector_check || return $?
  slot_active
}

# slot_flushed_past LSN: Debezium confirmed (wrote to Kafka and flushed) everything up to LSN
slot_flushed_past() { [[ "$(sql_value "SELECT confirmed_flush_lsn >= '$1'::pg_lsn FROM pg_replication_slots WHERE slot_name = '$SLOT'")" == t ]]; }

# After a slot was recreated: once Debezium streams from the new slot, a row in cdc_gaps tells every ordercast
# instance, in stream order, that changes before it may never have been captured; each one then compares what it
# delivered with Postgres. Pending until it is done (a marker file), so an interrupted `up` finishes it next time.
step_announce_gap() {
  local lsn
  [[ -f "$RUN/gap-pending" ]] || return 0
  if [[ -z "$(sql_value "SELECT to_regclass('public.cdc_gaps')")" ]]; then
    log "gap: no cdc_gaps table yet (ordercast never migrated this database): nobody to tell"
    rm -f "$RUN/gap-pending"
    return 0
  fi
  wait_until gap "Debezium streaming from slot $SLOT" 120 "$LOGS/connect.log" "$(live_pid connect)" slot_active
  lsn="$(sql_value "INSERT INTO cdc_gaps (reason) VALUES ('replication slot $SLOT recreated by stack.sh after it lost WAL; changes committed before $(date -u +%FT%TZ) may not have been captured') RETURNING pg_current_wal_lsn()")" ||
    fail gap "$LOGS/postgres.log" "could not insert into cdc_gaps"
  wait_until gap "Debezium to capture the gap announcement (LSN $lsn)" 120 "$LOGS/connect.log" "$(live_pid connect)" slot_flushed_past "$lsn"
  rm -f "$RUN/gap-pending"
  log "gap: announced in cdc_gaps; every ordercast instance compares its subscribers with Postgres"
}

# ---------------------------------------------------------------------------------------------------- commands

# one stack.sh up/down/reset at a time (fd 9 holds the lock; the services never inherit it)
lock() {
  mkdir -p "$RUN"
  exec 9>"$RUN/.lock"
  if ! flock -n 9; then
    log "lock: another stack.sh up/down/reset is running; waiting for it (up to 300s) ..."
    flock -w 300 9 || fail lock "" "another stack.sh still holds $RUN/.lock after 300s"
  fi
}

cmd_up() {
  local t0
  t0="$(now)"
  lock
  log "up: state in $STATE"
  step_prerequisites
  step_download
  step_tls
  step_postgres
  step_kafka
  step_slot
  step_connect
  step_announce_gap
  log "up: all running in $(since "$t0")s"
  log "  DATABASE_URL=postgres://$DB_USER:$DB_PASSWORD@$HOST:$PG_PORT/$DB_NAME   (TLS: add ?sslmode=verify-full&sslrootcert=$TLS/ca.pem)"
  log "  KAFKA_BROKERS=$HOST:$KAFKA_PORT   topics: ordercast.public.<table>"
  log "  secured Kafka: KAFKA_BROKERS=$HOST:$KAFKA_SASL_PORT ORDERCAST_KAFKA_SECURITY_PROTOCOL=SASL_SSL ORDERCAST_KAFKA_SASL_MECHANISM=SCRAM-SHA-512 ORDERCAST_KAFKA_SASL_USERNAME=$KAFKA_SASL_USER ORDERCAST_KAFKA_SASL_PASSWORD=$KAFKA_SASL_PASSWORD ORDERCAST_KAFKA_SSL_CA_LOCATION=$TLS/ca.pem"
  log "  KAFKA_CONNECT_URL=http://$HOST:$CONNECT_PORT"
}

# stop_java SERVICE TIMEOUT
stop_java() {
  local svc=$1 timeout=$2 pid t0
  pid="$(live_pid "$svc")"
  if [[ -z "$pid" ]]; then
    log "$svc: not running"
    rm -f "$RUN/$svc.pid"
    return
  fi
  t0="$(now)"
  printf '[stack] %s: stopping pid %s (SIGTERM), waiting for it to exit ... ' "$svc" "$pid"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + timeout))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    printf 'killed (SIGKILL) after %ss\n' "$(since "$t0")"
  else
    printf 'stopped in %ss\n' "$(since "$t0")"
  fi
  rm -f "$RUN/$svc.pid"
}

stop_postgres() {
  local pid t0
  pid="$(live_pid postgres)"
  if [[ -z "$pid" ]] && [[ -f "$PGDATA/postmaster.pid" ]] && pg_running; then
    pid="$(head -n1 "$PGDATA/postmaster.pid")" # running without our pid file
  fi
  if [[ -z "$pid" ]]; then
    log "postgres: not running"
    rm -f "$RUN/postgres.pid"
    return
  fi
  t0="$(now)"
  printf '[stack] postgres: stopping pid %s (pg_ctl stop -m fast), waiting for it to exit ... ' "$pid"
  if ! as_pg "$PG_BIN/pg_ctl" stop -D "$PGDATA" -m fast -w -t 60 >/dev/null 2>&1; then
    printf 'pg_ctl stop failed\n'
    fail down "$LOGS/postgres.log" "could not stop postgres (pid $pid)"
  fi
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  printf 'stopped in %ss\n' "$(since "$t0")"
  rm -f "$RUN/postgres.pid"
}

cmd_down() {
  lock
  stop_java connect 30
  stop_java kafka 60
  stop_postgres
  log "down: done"
}

cmd_reset() {
  cmd_down
  log "reset: deleting $PG_DIR $KAFKA_DIR $CONNECT_DIR $LOGS (keeping downloads in $LIB and the CA in $TLS)"
  rm -rf "$PG_DIR" "$KAFKA_DIR" "$CONNECT_DIR" "$LOGS"
  log "reset: done"
}

status_line() { # SERVICE PID PORT
  local svc=$1 pid=$2 port=$3 state=down rss=- listen=no
  if [[ -n "$pid" ]]; then
    state=up
    rss="$(rss_mb "$pid") MB"
  fi
  port_open "$port" && listen=yes
  printf '[stack] %-9s %-5s pid %-8s %s:%-6s listening=%-4s RSS %s\n' "$svc" "$state" "${pid:--}" "$HOST" "$port" "$listen" "$rss"
}

cmd_status() {
  local pid total=0 child
  status_line postgres "$(live_pid postgres)" "$PG_PORT"
  pid="$(live_pid postgres)"
  if [[ -n "$pid" ]]; then
    for child in $(pgrep -P "$pid" || true); do
      total=$((total + $(awk '/^VmRSS:/ { print $2 }' "/proc/$child/status" 2>/dev/null || echo 0)))
    done
    log "          (postgres backends/helpers: $(pgrep -c -P "$pid" || true) processes, $((total / 1024)) MB RSS more, shared buffers counted in each)"
  fi
  if [[ -n "$pid" ]]; then
    log "          replication slot $SLOT: $(psql_super -d "$DB_NAME" -At -c \
      "SELECT CASE WHEN active THEN 'active' ELSE 'INACTIVE' END || ', wal_status ' || coalesce(wal_status, '?') ||
              ', WAL retained ' || coalesce(pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)), 'none') ||
              ' of max_slot_wal_keep_size ' || current_setting('max_slot_wal_keep_size')
         FROM pg_replication_slots WHERE slot_name = '$SLOT'" 2>/dev/null || true)"
  fi
  status_line kafka "$(live_pid kafka)" "$KAFKA_PORT"
  status_line kafka-sasl "$(live_pid kafka)" "$KAFKA_SASL_PORT"
  status_line connect "$(live_pid connect)" "$CONNECT_PORT"
  if port_open "$CONNECT_PORT"; then
    read -r c t <<<"$(connector_states)"
    log "connector $CONNECTOR: connector $c, task 0 $t"
  else
    log "connector $CONNECTOR: - (Connect is not running)"
  fi
  log "versions: Kafka $KAFKA_VERSION, Debezium $DEBEZIUM_VERSION, PostgreSQL $("$PG_BIN/postgres" --version 2>/dev/null | awk '{ print $3 }' || echo '?')"
}

# crash SERVICE: what a real crash does, for the fault suite (`make chaos`); `up` repairs it.
cmd_crash() {
  local pid
  case "${1:-}" in
    kafka | connect)
      pid="$(live_pid "$1")"
      [[ -n "$pid" ]] || fail crash "" "$1 is not running"
      kill -KILL "$pid"
      while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
      rm -f "$RUN/$1.pid"
      log "crash: $1 (pid $pid) killed with SIGKILL"
      ;;
    postgres)
      pid="$(live_pid postgres)"
      [[ -n "$pid" ]] || fail crash "" "postgres is not running"
      as_pg "$PG_BIN/pg_ctl" stop -D "$PGDATA" -m immediate -w -t 30 >/dev/null 2>&1 ||
        fail crash "$LOGS/postgres.log" "pg_ctl stop -m immediate failed"
      rm -f "$RUN/postgres.pid"
      log "crash: postgres (pid $pid) stopped with -m immediate (no shutdown checkpoint: crash recovery on start)"
      ;;
    walsender)
      psql_super -d "$DB_NAME" -At -c \
        "SELECT count(pg_terminate_backend(active_pid)) FROM pg_replication_slots WHERE slot_name = '$SLOT' AND active_pid IS NOT NULL" |
        grep -qx 1 || fail crash "" "slot $SLOT has no active walsender to terminate"
      log "crash: terminated Debezium's replication connection (walsender of slot $SLOT)"
      ;;
    *)
      echo "usage: $0 crash kafka|connect|postgres|walsender" >&2
      exit 2
      ;;
  esac
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  reset) cmd_reset ;;
  crash) cmd_crash "${2:-}" ;;
  prerequisites) step_build_prerequisites ;;
  psql)
    shift
    pg_running || fail psql "" "postgres is not running; start it with 'stack/stack.sh up'"
    as_pg "$PG_BIN/psql" -X -h "$PG_SOCKET" -p "$PG_PORT" -U postgres -d "$DB_NAME" "$@"
    ;;
  *)
    echo "usage: $0 up|down|status|reset|crash SERVICE|psql [ARGS]|prerequisites" >&2
    exit 2
    ;;
esac
