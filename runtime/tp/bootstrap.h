/* bootstrap.h — hands the 128-byte NCCL unique id from rank 0 to the other ranks over TCP, for TP
 * across hosts (`--tp-master host:port --tp-rank r`, docs/tensor_parallel.md). Rank 0 listens on the
 * master address; every other rank connects (retrying until its deadline), says who it is, and gets
 * the id. NCCL then does all transport itself; this socket is closed once the id is handed out.
 * Owns: sockets and the wire format. Not: the id's meaning (comm.h), threads (callers block).
 *
 * Wire format, integers u32 big-endian:
 *   hello  (rank r -> rank 0), 16 bytes:  magic "QNTP" | version (1) | rank | tp_size
 *   reply  (rank 0 -> rank r), 16 bytes:  magic "QNTP" | version | status | payload_len
 *          then payload_len bytes: the id (status 0, payload_len 128) or nothing (status != 0).
 * A connection whose first 16 bytes are not a hello (port scanner, health check) is dropped and
 * the master keeps waiting; a Quern peer that disagrees (tp_size, rank, version) fails both sides. */
#ifndef QN_TP_BOOTSTRAP_H
#define QN_TP_BOOTSTRAP_H

#include <stdint.h>

#include "quern.h"
#include "tp/comm.h"

#ifdef __cplusplus
extern "C" {
#endif

#define QN_TP_BOOTSTRAP_VERSION 1u

typedef struct qn_tp_master {
    char host[256]; /* name or address; "0.0.0.0" / "::" make rank 0 listen on every interface */
    uint16_t port;  /* 0 only for listening: an ephemeral port (tests), see qn_tp_bootstrap_port */
} qn_tp_master;

/* "10.0.0.1:29500", "node0:29500", "[fe80::1]:29500". QN_ERR_INVALID_ARG with a message otherwise. */
qn_status qn_tp_master_parse(const char *spec, qn_tp_master *out, qn_error *err);

/* --- rank 0 --- */
typedef struct qn_tp_bootstrap_server qn_tp_bootstrap_server;
/* Binds and listens on m (SO_REUSEADDR). Listening starts here, so peers that connect before
 * qn_tp_bootstrap_serve wait in the backlog. */
qn_status qn_tp_bootstrap_listen(const qn_tp_master *m, qn_tp_bootstrap_server **out, qn_error *err);
uint16_t qn_tp_bootstrap_port(const qn_tp_bootstrap_server *s); /* the bound port */
/* Serves id to ranks 1..tp_size-1, each once; returns when all have it, or QN_ERR_IO naming the
 * missing ranks after timeout_ms, or QN_ERR_INVALID_ARG when a peer disagrees on tp_size / rank. */
qn_status qn_tp_bootstrap_serve(qn_tp_bootstrap_server *s, int tp_size, const qn_tp_unique_id *id,
                                int timeout_ms, qn_error *err);
/* The same when the master's process itself runs ranks 0..n_local-1: only ranks n_local..tp_size-1 are
 * waited for, and a peer claiming a local rank is refused. */
qn_status qn_tp_bootstrap_serve_remote(qn_tp_bootstrap_server *s, int tp_size, int n_local, const qn_tp_unique_id *id,
                                       int timeout_ms, qn_error *err);
void qn_tp_bootstrap_server_destroy(qn_tp_bootstrap_server *s); /* NULL: no-op */

/* --- ranks 1..tp_size-1 --- */
/* Connects to m (retrying every 100 ms while refused or unreachable) and receives the id.
 * QN_ERR_IO on timeout or a dropped connection, QN_ERR_FORMAT on a malformed reply,
 * QN_ERR_INVALID_ARG when rank 0 refused us (the message says why). */
qn_status qn_tp_bootstrap_fetch(const qn_tp_master *m, int rank, int tp_size, int timeout_ms,
                                qn_tp_unique_id *id, qn_error *err);

/* --- both --- */
/* The whole exchange for one rank: rank 0 listens on master_spec and serves *id (which it filled,
 * e.g. with qn_tp_nccl_get_unique_id); other ranks fetch into *id. */
qn_status qn_tp_bootstrap_exchange(const char *master_spec, int rank, int tp_size, qn_tp_unique_id *id,
                                   int timeout_ms, qn_error *err);
/* For a process that runs ranks first_rank .. first_rank + n_local - 1 (`--tp-rank R --tp-local L`): the
 * process with rank 0 listens and serves the other processes' ranks; every other process fetches the id
 * once per rank it runs (so the master's count of ranks stays the protocol's). n_local == tp_size: one
 * process holds every rank, nothing is exchanged. */
qn_status qn_tp_bootstrap_exchange_local(const char *master_spec, int first_rank, int n_local, int tp_size,
                                         qn_tp_unique_id *id, int timeout_ms, qn_error *err);

#ifdef __cplusplus
}
#endif
#endif /* QN_TP_BOOTSTRAP_H */
