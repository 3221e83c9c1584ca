/* log.h — leveled logging to stderr. The level is a field of the caller's context or passed in;
 * qn_log_level_default is the only process-wide knob and is set once by tools/main.c. */
#ifndef QN_LOG_H
#define QN_LOG_H

typedef enum qn_log_level {
    QN_LOG_ERROR = 0,
    QN_LOG_WARN = 1,
    QN_LOG_INFO = 2,
    QN_LOG_DEBUG = 3,
} qn_log_level;

void qn_log_set_level(qn_log_level lvl);
void qn_log(qn_log_level lvl, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

#define QN_LOGE(...) qn_log(QN_LOG_ERROR, __VA_ARGS__)
#define QN_LOGW(...) qn_log(QN_LOG_WARN, __VA_ARGS__)
#define QN_LOGI(...) qn_log(QN_LOG_INFO, __VA_ARGS__)
#define QN_LOGD(...) qn_log(QN_LOG_DEBUG, __VA_ARGS__)

#endif
