/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/uio.h>

#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>

#include "os/log.h"

#define LOG_FIELDS_MAX 24

static atomic_int max_level = LOG_INFO;
static bool journal = false;

/* systemd.exec(5): JOURNAL_STREAM is "device:inode" of the stream stderr was connected to. */
static bool stderr_is_journal_stream(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
}

void log_setup(void) {
        journal = stderr_is_journal_stream();
}

bool log_to_journal(void) {
        return journal;
}

void log_set_max_level(int level) {
        atomic_store(&max_level, level);
}

int log_get_max_level(void) {
        return atomic_load(&max_level);
}

const char *log_field_format(char *buf, size_t size, const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        (void) vsnprintf(buf, size, format, ap);
        va_end(ap);
        return buf;
}

static int error_return(int error) {
        return error == 0 ? 0 : error < 0 ? error : -error;
}

/* Journal fields and stderr lines are single-line; a message from a library
 * (libpq ends its messages with '\n') must not break that. */
static void flatten_newlines(char *s) {
        size_t l = strlen(s);

        while (l > 0 && (s[l - 1] == '\n' || s[l - 1] == '\r'))
                s[--l] = '\0';
        for (char *p = s; *p; p++)
                if (*p == '\n' || *p == '\r')
                        *p = ' ';
}

static void write_stderr(int level, const char *message) {
        char line[LOG_MESSAGE_MAX + 16];
        int n;

        n = snprintf(line, sizeof line, "<%d>%s\n", level, message);
        if (n < 0)
                return;
        if ((size_t) n >= sizeof line) {
                n = (int) sizeof line - 1;
                line[n - 1] = '\n';
        }
        /* One write per line keeps lines from several threads whole. */
        (void) !write(STDERR_FILENO, line, (size_t) n);
}

/* __FILE__ as the compiler saw it ("../src/pipeline.c" from a build directory) without the
 * way there: CODE_FILE= names the file in the source tree. */
static const char *source_file(const char *file) {
        const char *p = file, *found = NULL;

        while ((p = strstr(p, "src/"))) {
                found = p;
                p += strlen("src/");
        }
        return found ? found : file;
}

static void write_journal(int level, int error, const char *file, int line, const char *func,
                          const char *const *fields, size_t n_fields) {
        struct iovec iov[LOG_FIELDS_MAX + 8];
        char priority[32], code_file[LOG_FIELD_MAX], code_line[32], code_func[LOG_FIELD_MAX], errno_field[32];
        size_t n = 0;

        for (size_t i = 0; i < n_fields && n < LOG_FIELDS_MAX; i++)
                iov[n++] = (struct iovec) { .iov_base = (void *) fields[i], .iov_len = strlen(fields[i]) };

        snprintf(priority, sizeof priority, "PRIORITY=%d", level);
        iov[n++] = (struct iovec) { .iov_base = priority, .iov_len = strlen(priority) };
        iov[n++] = (struct iovec) { .iov_base = (void *) "SYSLOG_IDENTIFIER=transmitter",
                                    .iov_len = strlen("SYSLOG_IDENTIFIER=transmitter") };
        snprintf(code_file, sizeof code_file, "CODE_FILE=%s", source_file(file));
        iov[n++] = (struct iovec) { .iov_base = code_file, .iov_len = strlen(code_file) };
        snprintf(code_line, sizeof code_line, "CODE_LINE=%d", line);
        iov[n++] = (struct iovec) { .iov_base = code_line, .iov_len = strlen(code_line) };
        snprintf(code_func, sizeof code_func, "CODE_FUNC=%s", func);
        iov[n++] = (struct iovec) { .iov_base = code_func, .iov_len = strlen(code_func) };
        if (error != 0) {
                snprintf(errno_field, sizeof errno_field, "ERRNO=%d", abs(error));
                iov[n++] = (struct iovec) { .iov_base = errno_field, .iov_len = strlen(errno_field) };
        }

        if (sd_journal_sendv(iov, (int) n) < 0)
                write_stderr(level, (const char *) iov[0].iov_base + strlen("MESSAGE="));
}

static void log_dispatch(int level, int error, const char *file, int line, const char *func,
                         char *message_field, const char *const *extra, size_t n_extra) {
        const char *fields[LOG_FIELDS_MAX];
        size_t n = 0;

        flatten_newlines(message_field);
        fields[n++] = message_field;
        for (size_t i = 0; i < n_extra && n < LOG_FIELDS_MAX; i++)
                fields[n++] = extra[i];

        if (journal)
                write_journal(level, error, file, line, func, fields, n);
        else
                write_stderr(level, message_field + strlen("MESSAGE="));
}

int log_internal(int level, int error, const char *file, int line, const char *func, const char *format, ...) {
        char message[LOG_MESSAGE_MAX] = "MESSAGE=";
        va_list ap;

        if (level > log_get_max_level())
                return error_return(error);

        va_start(ap, format);
        (void) vsnprintf(message + strlen("MESSAGE="), sizeof message - strlen("MESSAGE="), format, ap);
        va_end(ap);

        log_dispatch(level, error, file, line, func, message, NULL, 0);
        return error_return(error);
}

int log_struct_internal(int level, int error, const char *file, int line, const char *func, ...) {
        const char *extra[LOG_FIELDS_MAX];
        char message[LOG_MESSAGE_MAX] = "MESSAGE=";
        size_t n_extra = 0;
        const char *f;
        va_list ap;

        if (level > log_get_max_level())
                return error_return(error);

        va_start(ap, func);
        while ((f = va_arg(ap, const char *))) {
                if (startswith(f, "MESSAGE="))
                        snprintf(message, sizeof message, "%s", f);
                else if (n_extra < LOG_FIELDS_MAX)
                        extra[n_extra++] = f;
        }
        va_end(ap);

        log_dispatch(level, error, file, line, func, message, extra, n_extra);
        return error_return(error);
}
