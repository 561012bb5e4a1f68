/* log.h: leveled logging to stderr (info/warn/error/debug), quiet and verbose switches. */
#ifndef MG_CORE_LOG_H
#define MG_CORE_LOG_H

typedef enum mg_log_level { MG_LOG_ERROR = 0, MG_LOG_WARN, MG_LOG_INFO, MG_LOG_DEBUG } mg_log_level;

void mg_log_set_level(mg_log_level level);
mg_log_level mg_log_get_level(void);
void mg_log(mg_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define mg_log_error(...) mg_log(MG_LOG_ERROR, __VA_ARGS__)
#define mg_log_warn(...) mg_log(MG_LOG_WARN, __VA_ARGS__)
#define mg_log_info(...) mg_log(MG_LOG_INFO, __VA_ARGS__)
#define mg_log_debug(...) mg_log(MG_LOG_DEBUG, __VA_ARGS__)

#endif
