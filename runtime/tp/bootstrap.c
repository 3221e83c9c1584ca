/* bootstrap.c — TCP exchange of the NCCL unique id (wire format in bootstrap.h). Blocking sockets
 * driven by poll() against one absolute deadline per call, so every wait is bounded; send uses
 * MSG_NOSIGNAL so a peer that hangs up yields an error, not SIGPIPE. */
#include "tp/bootstrap.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

#define QN_TP_MAGIC 0x514E5450u /* "QNTP" */
#define QN_TP_FRAME_BYTES 16
#define QN_TP_PEER_READ_MS 5000 /* a connected peer has this long to send its hello */

enum { /* reply status */
    QN_TP_REPLY_OK = 0,
    QN_TP_REPLY_SIZE_MISMATCH = 1,
    QN_TP_REPLY_BAD_RANK = 2,
    QN_TP_REPLY_DUP_RANK = 3,
    QN_TP_REPLY_BAD_VERSION = 4,
};

struct qn_tp_bootstrap_server {
    int fd; /* listening socket */
    uint16_t port;
};

/* ---------------------------------------------------------------- helpers */

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int left_ms(int64_t deadline) {
    const int64_t d = deadline - now_ms();
    return d < 0 ? 0 : (d > 1000000 ? 1000000 : (int)d);
}

static void put_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Reads or writes exactly n bytes before deadline. 0 on success, -1 timeout, -2 closed/error. */
static int io_full(int fd, void *buf, size_t n, bool is_write, int64_t deadline) {
    uint8_t *p = buf;
    while (n) {
        struct pollfd pfd = {.fd = fd, .events = is_write ? POLLOUT : POLLIN};
        const int pr = poll(&pfd, 1, left_ms(deadline));
        if (pr < 0 && errno == EINTR) continue;
        if (pr < 0) return -2;
        if (pr == 0) return -1;
        const ssize_t k = is_write ? send(fd, p, n, MSG_NOSIGNAL) : recv(fd, p, n, 0);
        if (k < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        if (k <= 0) return -2;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static const char *io_what(int rc) { return rc == -1 ? "timed out" : "connection closed or failed"; }

/* ---------------------------------------------------------------- address */

qn_status qn_tp_master_parse(const char *spec, qn_tp_master *out, qn_error *err) {
    if (!spec || !out) return qn_error_set(err, QN_ERR_INVALID_ARG, "tp master: no address given");
    memset(out, 0, sizeof *out);
    const char *host = spec, *host_end, *colon;
    if (spec[0] == '[') { /* [ipv6]:port */
        host = spec + 1;
        host_end = strchr(host, ']');
        if (!host_end || host_end[1] != ':')
            return qn_error_set(err, QN_ERR_INVALID_ARG, "tp master '%s': expected [address]:port", spec);
        colon = host_end + 1;
    } else {
        colon = strrchr(spec, ':');
        if (!colon) return qn_error_set(err, QN_ERR_INVALID_ARG, "tp master '%s': expected host:port", spec);
        host_end = colon;
        if (memchr(spec, ':', (size_t)(colon - spec)))
            return qn_error_set(err, QN_ERR_INVALID_ARG, "tp master '%s': write IPv6 addresses as [addr]:port",
                                spec);
    }
    const size_t hl = (size_t)(host_end - host);
    if (hl == 0 || hl >= sizeof out->host)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "tp master '%s': empty or too long host", spec);
    const char *ps = colon + 1;
    if (!*ps || strlen(ps) > 5 || strspn(ps, "0123456789") != strlen(ps))
        return qn_error_set(err, QN_ERR_INVALID_ARG, "tp master '%s': port must be a number", spec);
    const long port = strtol(ps, NULL, 10);
    if (port > 65535) return qn_error_set(err, QN_ERR_INVALID_ARG, "tp master '%s': port out of range", spec);
    memcpy(out->host, host, hl);
    out->host[hl] = '\0';
    out->port = (uint16_t)port;
    return QN_OK;
}

static qn_status resolve(const qn_tp_master *m, bool passive, struct addrinfo **res, qn_error *err) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = passive ? AI_PASSIVE : 0};
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)m->port);
    const int rc = getaddrinfo(m->host, port, &hints, res);
    if (rc != 0)
        return qn_error_set(err, QN_ERR_IO, "tp bootstrap: cannot resolve '%s': %s", m->host, gai_strerror(rc));
    return QN_OK;
}

/* ---------------------------------------------------------------- rank 0 */

qn_status qn_tp_bootstrap_listen(const qn_tp_master *m, qn_tp_bootstrap_server **out, qn_error *err) {
    if (!m || !out) return qn_error_set(err, QN_ERR_INVALID_ARG, "tp bootstrap: bad arguments");
    *out = NULL;
    struct addrinfo *res = NULL;
    qn_status st = resolve(m, true, &res, err);
    if (st != QN_OK) return st;
    int fd = -1, last_errno = 0;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            last_errno = errno;
            continue;
        }
        const int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 64) == 0) break;
        last_errno = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return qn_error_set(err, QN_ERR_IO, "tp bootstrap: cannot listen on %s:%u: %s", m->host, (unsigned)m->port,
                            strerror(last_errno));
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    uint16_t port = m->port;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                        : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    qn_tp_bootstrap_server *s = malloc(sizeof *s);
    if (!s) {
        close(fd);
        return qn_error_set(err, QN_ERR_NOMEM, "tp bootstrap: out of memory");
    }
    s->fd = fd;
    s->port = port;
    *out = s;
    return QN_OK;
}

uint16_t qn_tp_bootstrap_port(const qn_tp_bootstrap_server *s) { return s ? s->port : 0; }

void qn_tp_bootstrap_server_destroy(qn_tp_bootstrap_server *s) {
    if (!s) return;
    close(s->fd);
    free(s);
}

static int send_reply(int fd, uint32_t status, const qn_tp_unique_id *id, int64_t deadline) {
    uint8_t f[QN_TP_FRAME_BYTES + QN_TP_UNIQUE_ID_BYTES];
    put_u32(f, QN_TP_MAGIC);
    put_u32(f + 4, QN_TP_BOOTSTRAP_VERSION);
    put_u32(f + 8, status);
    put_u32(f + 12, status == QN_TP_REPLY_OK ? QN_TP_UNIQUE_ID_BYTES : 0);
    size_t n = QN_TP_FRAME_BYTES;
    if (status == QN_TP_REPLY_OK) {
        memcpy(f + QN_TP_FRAME_BYTES, id->bytes, QN_TP_UNIQUE_ID_BYTES);
        n += QN_TP_UNIQUE_ID_BYTES;
    }
    return io_full(fd, f, n, true, deadline);
}

qn_status qn_tp_bootstrap_serve(qn_tp_bootstrap_server *s, int tp_size, const qn_tp_unique_id *id,
                                int timeout_ms, qn_error *err) {
    return qn_tp_bootstrap_serve_remote(s, tp_size, 1, id, timeout_ms, err);
}

qn_status qn_tp_bootstrap_serve_remote(qn_tp_bootstrap_server *s, int tp_size, int n_local, const qn_tp_unique_id *id,
                                       int timeout_ms, qn_error *err) {
    if (!s || !id || tp_size < 1 || tp_size > 65536 || n_local < 1 || n_local > tp_size || timeout_ms < 0)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "tp bootstrap: bad arguments");
    bool *served = calloc((size_t)tp_size, sizeof *served);
    if (!served) return qn_error_set(err, QN_ERR_NOMEM, "tp bootstrap: out of memory");
    const int64_t deadline = now_ms() + timeout_ms;
    int n_left = tp_size - n_local;
    qn_status st = QN_OK;
    while (n_left > 0) {
        struct pollfd pfd = {.fd = s->fd, .events = POLLIN};
        const int pr = poll(&pfd, 1, left_ms(deadline));
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0) {
            char missing[256] = "";
            size_t ml = 0;
            for (int r = n_local; r < tp_size && ml + 12 < sizeof missing; r++)
                if (!served[r]) ml += (size_t)snprintf(missing + ml, sizeof missing - ml, " %d", r);
            st = qn_error_set(err, QN_ERR_IO,
                              "tp bootstrap: master port %u %s after %d ms waiting for rank(s)%s of tp_size %d",
                              (unsigned)s->port, pr == 0 ? "timed out" : "poll failed", timeout_ms, missing,
                              tp_size);
            break;
        }
        const int fd = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) continue; /* the peer gave up between poll and accept: keep waiting */
        const int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

        uint8_t h[QN_TP_FRAME_BYTES];
        const int64_t peer_deadline = now_ms() + QN_TP_PEER_READ_MS;
        const int rc = io_full(fd, h, sizeof h, false, peer_deadline < deadline ? peer_deadline : deadline);
        if (rc != 0 || get_u32(h) != QN_TP_MAGIC) { /* not a Quern peer: drop it, keep waiting */
            QN_LOGW("tp bootstrap: dropped a connection that sent no valid hello (%s)",
                    rc != 0 ? io_what(rc) : "bad magic");
            close(fd);
            continue;
        }
        const uint32_t ver = get_u32(h + 4), rank = get_u32(h + 8), size = get_u32(h + 12);
        uint32_t status = QN_TP_REPLY_OK;
        if (ver != QN_TP_BOOTSTRAP_VERSION) {
            status = QN_TP_REPLY_BAD_VERSION;
            st = qn_error_set(err, QN_ERR_INVALID_ARG, "tp bootstrap: a peer speaks protocol version %u, master %u",
                              ver, QN_TP_BOOTSTRAP_VERSION);
        } else if (size != (uint32_t)tp_size) {
            status = QN_TP_REPLY_SIZE_MISMATCH;
            st = qn_error_set(err, QN_ERR_INVALID_ARG,
                              "tp bootstrap: rank %u was started with tp_size %u, the master with %d", rank, size,
                              tp_size);
        } else if (rank < (uint32_t)n_local || rank >= (uint32_t)tp_size) {
            status = QN_TP_REPLY_BAD_RANK;
            st = qn_error_set(err, QN_ERR_INVALID_ARG, "tp bootstrap: a peer claims rank %u (valid: %d..%d; 0..%d "
                              "run in the master's process)", rank, n_local, tp_size - 1, n_local - 1);
        } else if (served[rank]) {
            status = QN_TP_REPLY_DUP_RANK;
            st = qn_error_set(err, QN_ERR_INVALID_ARG, "tp bootstrap: rank %u connected twice (two processes "
                              "started with the same --tp-rank?)", rank);
        }
        const int wrc = send_reply(fd, status, id, deadline);
        close(fd);
        if (status != QN_TP_REPLY_OK) break;
        if (wrc != 0) {
            QN_LOGW("tp bootstrap: sending the id to rank %u failed (%s); it may reconnect", rank, io_what(wrc));
            continue;
        }
        served[rank] = true;
        n_left--;
    }
    free(served);
    return st;
}

/* ---------------------------------------------------------------- ranks 1.. */

/* One connect attempt to any address of m, bounded by deadline. Returns fd or -1. */
static int try_connect(const struct addrinfo *res, int64_t deadline, int *last_errno) {
    for (const struct addrinfo *a = res; a; a = a->ai_next) {
        const int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
        if (fd < 0) {
            *last_errno = errno;
            continue;
        }
        int rc = connect(fd, a->ai_addr, a->ai_addrlen);
        if (rc != 0 && errno == EINPROGRESS) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            int soerr = ETIMEDOUT;
            socklen_t sl = sizeof soerr;
            if (poll(&pfd, 1, left_ms(deadline)) == 1) getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
            rc = soerr == 0 ? 0 : -1;
            errno = soerr;
        }
        if (rc == 0) {
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
            const int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            return fd;
        }
        *last_errno = errno;
        close(fd);
    }
    return -1;
}

qn_status qn_tp_bootstrap_fetch(const qn_tp_master *m, int rank, int tp_size, int timeout_ms,
                                qn_tp_unique_id *id, qn_error *err) {
    if (!m || !id || tp_size < 2 || rank < 1 || rank >= tp_size || timeout_ms < 0 || m->port == 0)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "tp bootstrap: bad arguments (rank %d, tp_size %d, port %u)",
                            rank, tp_size, m ? (unsigned)m->port : 0u);
    const int64_t deadline = now_ms() + timeout_ms;
    struct addrinfo *res = NULL;
    int fd = -1, last_errno = 0;
    /* The master may not be up yet, and its name may not resolve yet (DNS of a starting pod): retry both. */
    for (;;) {
        if (!res && resolve(m, false, &res, NULL) != QN_OK) res = NULL;
        if (res && (fd = try_connect(res, deadline, &last_errno)) >= 0) break;
        if (left_ms(deadline) == 0) {
            if (res) freeaddrinfo(res);
            return qn_error_set(err, QN_ERR_IO,
                                "tp bootstrap: rank %d timed out after %d ms connecting to master %s:%u (%s)", rank,
                                timeout_ms, m->host, (unsigned)m->port,
                                last_errno ? strerror(last_errno) : "cannot resolve");
        }
        const int nap = left_ms(deadline) < 100 ? left_ms(deadline) : 100;
        nanosleep(&(struct timespec){.tv_sec = 0, .tv_nsec = (long)nap * 1000000L}, NULL);
    }
    freeaddrinfo(res);

    qn_status st = QN_OK;
    uint8_t f[QN_TP_FRAME_BYTES];
    put_u32(f, QN_TP_MAGIC);
    put_u32(f + 4, QN_TP_BOOTSTRAP_VERSION);
    put_u32(f + 8, (uint32_t)rank);
    put_u32(f + 12, (uint32_t)tp_size);
    int rc = io_full(fd, f, sizeof f, true, deadline);
    if (rc == 0) rc = io_full(fd, f, sizeof f, false, deadline);
    if (rc != 0) {
        st = qn_error_set(err, QN_ERR_IO, "tp bootstrap: rank %d: master %s:%u %s during the exchange", rank,
                          m->host, (unsigned)m->port, io_what(rc));
        goto out_close;
    }
    const uint32_t magic = get_u32(f), ver = get_u32(f + 4), status = get_u32(f + 8), len = get_u32(f + 12);
    if (magic != QN_TP_MAGIC || ver != QN_TP_BOOTSTRAP_VERSION) {
        st = qn_error_set(err, QN_ERR_FORMAT, "tp bootstrap: rank %d: %s:%u is not a Quern TP master (magic %08x, "
                          "version %u)", rank, m->host, (unsigned)m->port, magic, ver);
        goto out_close;
    }
    if (status != QN_TP_REPLY_OK) {
        static const char *const why[] = {"", "tp_size differs from the master's", "rank out of range",
                                          "another process already has this rank", "protocol version mismatch"};
        st = qn_error_set(err, QN_ERR_INVALID_ARG, "tp bootstrap: master refused rank %d (tp_size %d): %s", rank,
                          tp_size, status < 5 ? why[status] : "unknown reason");
        goto out_close;
    }
    if (len != QN_TP_UNIQUE_ID_BYTES) {
        st = qn_error_set(err, QN_ERR_FORMAT, "tp bootstrap: rank %d: id of %u bytes, expected %d", rank, len,
                          QN_TP_UNIQUE_ID_BYTES);
        goto out_close;
    }
    rc = io_full(fd, id->bytes, QN_TP_UNIQUE_ID_BYTES, false, deadline);
    if (rc != 0)
        st = qn_error_set(err, QN_ERR_IO, "tp bootstrap: rank %d: reading the id %s", rank, io_what(rc));
out_close:
    close(fd);
    return st;
}

qn_status qn_tp_bootstrap_exchange(const char *master_spec, int rank, int tp_size, qn_tp_unique_id *id,
                                   int timeout_ms, qn_error *err) {
    qn_tp_master m;
    qn_status st = qn_tp_master_parse(master_spec, &m, err);
    if (st != QN_OK) return st;
    if (tp_size == 1) return QN_OK;
    if (rank != 0) return qn_tp_bootstrap_fetch(&m, rank, tp_size, timeout_ms, id, err);
    qn_tp_bootstrap_server *s = NULL;
    st = qn_tp_bootstrap_listen(&m, &s, err);
    if (st != QN_OK) return st;
    st = qn_tp_bootstrap_serve(s, tp_size, id, timeout_ms, err);
    qn_tp_bootstrap_server_destroy(s);
    return st;
}

qn_status qn_tp_bootstrap_exchange_local(const char *master_spec, int first_rank, int n_local, int tp_size,
                                         qn_tp_unique_id *id, int timeout_ms, qn_error *err) {
    if (n_local < 1 || first_rank < 0 || first_rank + n_local > tp_size)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "tp bootstrap: ranks %d..%d are outside tp_size %d", first_rank,
                            first_rank + n_local - 1, tp_size);
    qn_tp_master m;
    qn_status st = qn_tp_master_parse(master_spec, &m, err);
    if (st != QN_OK || n_local == tp_size) return st;
    if (first_rank != 0) { /* one hello per rank: the master counts ranks, not processes */
        for (int r = first_rank; r < first_rank + n_local && st == QN_OK; r++)
            st = qn_tp_bootstrap_fetch(&m, r, tp_size, timeout_ms, id, err);
        return st;
    }
    qn_tp_bootstrap_server *s = NULL;
    if ((st = qn_tp_bootstrap_listen(&m, &s, err)) != QN_OK) return st;
    st = qn_tp_bootstrap_serve_remote(s, tp_size, n_local, id, timeout_ms, err);
    qn_tp_bootstrap_server_destroy(s);
    return st;
}
