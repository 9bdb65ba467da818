/*
 * Power-loss recorder for test/integration/power-loss.test.ts: an LD_PRELOAD library that records,
 * for files in one directory, what a power cut would keep. It changes no call's outcome.
 *
 * Environment: COLLOQUY_PL_DIR (absolute path of the watched directory, which must exist),
 * COLLOQUY_PL_LOG (event file, appended with plain write(2) so every event that returned survives
 * SIGKILL), COLLOQUY_PL_TRASH (a directory on the same filesystem, outside the watched one, where
 * files about to be unlinked or replaced are hard-linked first, so the test can bring them back),
 * COLLOQUY_PL_TABLE_SYNC_DELAY_MS (optional: a slow disk for LevelDB's table files, *.ldb/*.sst,
 * whose syncs wait this long first; it widens the window between a log switch and the MANIFEST
 * sync that names the new log, so a test's kill can land in it).
 *
 * Events, one line each (ino = inode number, name = a file's name inside the watched directory):
 *   I ino size name      the directory's files before the first change (written once, lazily)
 *   C ino name           a file was created (open/openat/creat/fopen with create, did not exist)
 *   Z ino                an existing file was truncated by open(O_TRUNC)/fopen("w")
 *   S ino size           fsync/fdatasync of a file returned: its first `size` bytes are durable
 *                        (size is taken with fstat before the sync, so it is a lower bound)
 *   D                    fsync/fdatasync of the watched directory returned: every create, rename
 *                        and unlink in it before this point is durable
 *   R ino old new ino2   rename within the directory (ino2: the replaced file, 0 when none)
 *   U ino name           unlink within the directory
 *   X what               a call this model does not cover (sync, syncfs, sync_file_range, msync,
 *                        O_SYNC/O_DSYNC opens, mkdir or links inside, renames across the boundary)
 *
 * Why data writes are not interposed: LevelDB (as built in classic-level) writes through stdio,
 * whose flushes call glibc's internal write, which no preload can see; the size at each fsync is
 * what matters, and fstat gives it whatever path the bytes took.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

static char watched[PATH_MAX];
static size_t watched_len;
static char trash[PATH_MAX];
static useconds_t table_sync_delay_us;
static int log_fd = -1;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static pthread_once_t listing_once = PTHREAD_ONCE_INIT;

static void init(void) {
  const char *dir = getenv("COLLOQUY_PL_DIR");
  const char *log = getenv("COLLOQUY_PL_LOG");
  const char *bin = getenv("COLLOQUY_PL_TRASH");
  if (dir == NULL || log == NULL || bin == NULL) return;
  snprintf(watched, sizeof watched, "%s", dir);
  watched_len = strlen(watched);
  while (watched_len > 1 && watched[watched_len - 1] == '/') watched[--watched_len] = '\0';
  snprintf(trash, sizeof trash, "%s", bin);
  const char *delay = getenv("COLLOQUY_PL_TABLE_SYNC_DELAY_MS");
  if (delay != NULL) table_sync_delay_us = (useconds_t)(atoi(delay) * 1000);
  log_fd = (int)syscall(SYS_openat, AT_FDCWD, log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

static int active(void) {
  pthread_once(&init_once, init);
  return log_fd >= 0;
}

/* One event, one write(2): a line is either in the file or not, even across SIGKILL. */
static void emit(const char *format, ...) {
  char line[PATH_MAX * 2 + 128];
  va_list args;
  va_start(args, format);
  int length = vsnprintf(line, sizeof line - 1, format, args);
  va_end(args);
  if (length < 0) return;
  if ((size_t)length > sizeof line - 2) length = (int)sizeof line - 2;
  line[length++] = '\n';
  ssize_t ignored = syscall(SYS_write, log_fd, line, (size_t)length);
  (void)ignored;
}

static void list_directory(void) {
  DIR *(*real_opendir)(const char *) = (DIR * (*)(const char *)) dlsym(RTLD_NEXT, "opendir");
  DIR *dir = real_opendir(watched);
  if (dir == NULL) {
    emit("X watched directory missing at first change");
    return;
  }
  struct dirent *entry;
  while ((entry = readdir(dir)) != NULL) {
    char path[PATH_MAX];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", watched, entry->d_name);
    if (lstat(path, &st) == 0 && S_ISREG(st.st_mode)) {
      emit("I %llu %lld %s", (unsigned long long)st.st_ino, (long long)st.st_size, entry->d_name);
    }
  }
  closedir(dir);
}

/* Writes the initial listing before the first change this process makes. */
static void before_change(void) { pthread_once(&listing_once, list_directory); }

/* Absolute form of (dirfd, path) into out; no normalisation beyond that (LevelDB passes plain paths). */
static void absolute(int dirfd, const char *path, char *out) {
  if (path[0] == '/') {
    snprintf(out, PATH_MAX, "%s", path);
    return;
  }
  char base[PATH_MAX];
  if (dirfd == AT_FDCWD) {
    if (getcwd(base, sizeof base) == NULL) base[0] = '\0';
  } else {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
    ssize_t n = readlink(link, base, sizeof base - 1);
    base[n < 0 ? 0 : n] = '\0';
  }
  snprintf(out, PATH_MAX, "%s/%s", base, path);
}

/* The name inside the watched directory, or NULL if the path is elsewhere (or in a subdirectory). */
static const char *inside(const char *absolute_path) {
  if (strncmp(absolute_path, watched, watched_len) != 0 || absolute_path[watched_len] != '/') return NULL;
  const char *name = absolute_path + watched_len + 1;
  if (*name == '\0' || strchr(name, '/') != NULL) return NULL;
  return name;
}

static int is_watched_directory(const char *absolute_path) {
  return strcmp(absolute_path, watched) == 0;
}

/* Keeps the inode at `path` reachable in the trash before it loses its name. */
static unsigned long long keep(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
  char kept[PATH_MAX];
  snprintf(kept, sizeof kept, "%s/%llu", trash, (unsigned long long)st.st_ino);
  if (link(path, kept) != 0 && errno != EEXIST) emit("X cannot keep %s", path);
  return (unsigned long long)st.st_ino;
}

/* ---- opens ---- */

static int exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
}

static void opened(int fd, const char *path, int flags, int existed) {
  if (fd < 0) return;
  const char *name = inside(path);
  if (name == NULL) return;
  if (flags & (O_SYNC | O_DSYNC)) emit("X O_SYNC open of %s", name);
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return;
  if (!existed && (flags & O_CREAT)) emit("C %llu %s", (unsigned long long)st.st_ino, name);
  else if (existed && (flags & O_TRUNC)) emit("Z %llu", (unsigned long long)st.st_ino);
}

static int open_common(const char *symbol, int dirfd, const char *path, int flags, mode_t mode) {
  int fd;
  if (!active()) {
    if (strcmp(symbol, "openat") == 0 || strcmp(symbol, "openat64") == 0) {
      int (*real)(int, const char *, int, ...) = (int (*)(int, const char *, int, ...))dlsym(RTLD_NEXT, symbol);
      return real(dirfd, path, flags, mode);
    }
    int (*real)(const char *, int, ...) = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, symbol);
    return real(path, flags, mode);
  }
  char full[PATH_MAX];
  absolute(dirfd, path, full);
  int watchedFile = inside(full) != NULL && (flags & (O_CREAT | O_TRUNC));
  int existed = 1;
  if (watchedFile) {
    before_change();
    existed = exists(full);
  }
  if (strcmp(symbol, "openat") == 0 || strcmp(symbol, "openat64") == 0) {
    int (*real)(int, const char *, int, ...) = (int (*)(int, const char *, int, ...))dlsym(RTLD_NEXT, symbol);
    fd = real(dirfd, path, flags, mode);
  } else {
    int (*real)(const char *, int, ...) = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, symbol);
    fd = real(path, flags, mode);
  }
  if (watchedFile) {
    int saved = errno;
    opened(fd, full, flags, existed);
    errno = saved;
  }
  return fd;
}

#define MODE_ARG(flags)                                    \
  mode_t mode = 0;                                         \
  if ((flags) & (O_CREAT | __O_TMPFILE)) {                 \
    va_list args;                                          \
    va_start(args, flags);                                 \
    mode = (mode_t)va_arg(args, int);                      \
    va_end(args);                                          \
  }

int open(const char *path, int flags, ...) {
  MODE_ARG(flags)
  return open_common("open", AT_FDCWD, path, flags, mode);
}
int open64(const char *path, int flags, ...) {
  MODE_ARG(flags)
  return open_common("open64", AT_FDCWD, path, flags, mode);
}
int openat(int dirfd, const char *path, int flags, ...) {
  MODE_ARG(flags)
  return open_common("openat", dirfd, path, flags, mode);
}
int openat64(int dirfd, const char *path, int flags, ...) {
  MODE_ARG(flags)
  return open_common("openat64", dirfd, path, flags, mode);
}
int creat(const char *path, mode_t mode) { return open_common("open", AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode); }
int creat64(const char *path, mode_t mode) { return open_common("open64", AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode); }
int __open_2(const char *path, int flags) { return open_common("open", AT_FDCWD, path, flags, 0); }
int __open64_2(const char *path, int flags) { return open_common("open64", AT_FDCWD, path, flags, 0); }
int __openat_2(int dirfd, const char *path, int flags) { return open_common("openat", dirfd, path, flags, 0); }
int __openat64_2(int dirfd, const char *path, int flags) { return open_common("openat64", dirfd, path, flags, 0); }

static FILE *fopen_common(const char *symbol, const char *path, const char *mode) {
  FILE *(*real)(const char *, const char *) = (FILE * (*)(const char *, const char *)) dlsym(RTLD_NEXT, symbol);
  if (!active()) return real(path, mode);
  char full[PATH_MAX];
  absolute(AT_FDCWD, path, full);
  int flags = mode[0] == 'w' ? (O_CREAT | O_TRUNC) : mode[0] == 'a' ? O_CREAT : 0;
  if (inside(full) == NULL || flags == 0) return real(path, mode);
  before_change();
  int existed = exists(full);
  FILE *file = real(path, mode);
  if (file != NULL) {
    int saved = errno;
    opened(fileno(file), full, flags, existed);
    errno = saved;
  }
  return file;
}

FILE *fopen(const char *path, const char *mode) { return fopen_common("fopen", path, mode); }
FILE *fopen64(const char *path, const char *mode) { return fopen_common("fopen64", path, mode); }

/* ---- syncs ---- */

static int sync_common(const char *symbol, int fd) {
  int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, symbol);
  if (!active()) return real(fd);
  struct stat st;
  char link[64];
  char target[PATH_MAX];
  int known = fstat(fd, &st) == 0;
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, target, sizeof target - 1);
  target[n < 0 ? 0 : n] = '\0';
  size_t target_len = strlen(target);
  if (table_sync_delay_us > 0 && target_len > 4 &&
      (strcmp(target + target_len - 4, ".ldb") == 0 || strcmp(target + target_len - 4, ".sst") == 0)) {
    usleep(table_sync_delay_us);
  }
  int result = real(fd);
  if (result != 0 || !known) return result;
  int saved = errno;
  if (inside(target) != NULL) before_change();
  if (S_ISDIR(st.st_mode)) {
    if (is_watched_directory(target)) emit("D");
  } else if (S_ISREG(st.st_mode)) {
    size_t trash_len = strlen(trash);
    if (inside(target) != NULL || (strncmp(target, trash, trash_len) == 0 && target[trash_len] == '/') ||
        (strstr(target, " (deleted)") != NULL && strncmp(target, watched, watched_len) == 0)) {
      emit("S %llu %lld", (unsigned long long)st.st_ino, (long long)st.st_size);
    }
  }
  errno = saved;
  return result;
}

int fsync(int fd) { return sync_common("fsync", fd); }
int fdatasync(int fd) { return sync_common("fdatasync", fd); }

void sync(void) {
  void (*real)(void) = (void (*)(void))dlsym(RTLD_NEXT, "sync");
  if (active()) emit("X sync()");
  real();
}
int syncfs(int fd) {
  int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "syncfs");
  if (active()) emit("X syncfs()");
  return real(fd);
}
int sync_file_range(int fd, off64_t offset, off64_t nbytes, unsigned int flags) {
  int (*real)(int, off64_t, off64_t, unsigned int) =
      (int (*)(int, off64_t, off64_t, unsigned int))dlsym(RTLD_NEXT, "sync_file_range");
  if (active()) emit("X sync_file_range()");
  return real(fd, offset, nbytes, flags);
}

/* ---- namespace changes ---- */

static int rename_common(int olddir, const char *oldpath, int newdir, const char *newpath, unsigned int flags,
                         int (*call)(int, const char *, int, const char *, unsigned int)) {
  if (!active()) return call(olddir, oldpath, newdir, newpath, flags);
  char from[PATH_MAX];
  char to[PATH_MAX];
  absolute(olddir, oldpath, from);
  absolute(newdir, newpath, to);
  const char *from_name = inside(from);
  const char *to_name = inside(to);
  if (from_name == NULL && to_name == NULL) return call(olddir, oldpath, newdir, newpath, flags);
  before_change();
  if (from_name == NULL || to_name == NULL || flags != 0) {
    emit("X rename across the watched directory or with flags: %s -> %s", from, to);
    return call(olddir, oldpath, newdir, newpath, flags);
  }
  struct stat st;
  unsigned long long ino = lstat(from, &st) == 0 ? (unsigned long long)st.st_ino : 0;
  unsigned long long replaced = exists(to) ? keep(to) : 0;
  int result = call(olddir, oldpath, newdir, newpath, flags);
  if (result == 0) {
    int saved = errno;
    emit("R %llu %s %s %llu", ino, from_name, to_name, replaced);
    errno = saved;
  }
  return result;
}

static int call_renameat2(int olddir, const char *oldpath, int newdir, const char *newpath, unsigned int flags) {
  if (flags == 0) {
    int (*real)(int, const char *, int, const char *) =
        (int (*)(int, const char *, int, const char *))dlsym(RTLD_NEXT, "renameat");
    return real(olddir, oldpath, newdir, newpath);
  }
  int (*real)(int, const char *, int, const char *, unsigned int) =
      (int (*)(int, const char *, int, const char *, unsigned int))dlsym(RTLD_NEXT, "renameat2");
  return real(olddir, oldpath, newdir, newpath, flags);
}

int rename(const char *oldpath, const char *newpath) {
  return rename_common(AT_FDCWD, oldpath, AT_FDCWD, newpath, 0, call_renameat2);
}
int renameat(int olddir, const char *oldpath, int newdir, const char *newpath) {
  return rename_common(olddir, oldpath, newdir, newpath, 0, call_renameat2);
}
int renameat2(int olddir, const char *oldpath, int newdir, const char *newpath, unsigned int flags) {
  return rename_common(olddir, oldpath, newdir, newpath, flags, call_renameat2);
}

static int unlink_common(int dirfd, const char *path, int flags) {
  int (*real)(int, const char *, int) = (int (*)(int, const char *, int))dlsym(RTLD_NEXT, "unlinkat");
  if (!active()) return real(dirfd, path, flags);
  char full[PATH_MAX];
  absolute(dirfd, path, full);
  const char *name = inside(full);
  if (name == NULL || (flags & AT_REMOVEDIR)) return real(dirfd, path, flags);
  before_change();
  unsigned long long ino = keep(full);
  int result = real(dirfd, path, flags);
  if (result == 0) {
    int saved = errno;
    emit("U %llu %s", ino, name);
    errno = saved;
  }
  return result;
}

int unlink(const char *path) { return unlink_common(AT_FDCWD, path, 0); }
int unlinkat(int dirfd, const char *path, int flags) { return unlink_common(dirfd, path, flags); }

static void refuse_inside(int dirfd, const char *path, const char *what) {
  if (!active()) return;
  char full[PATH_MAX];
  absolute(dirfd, path, full);
  if (inside(full) != NULL) emit("X %s inside the watched directory: %s", what, full);
}

int mkdir(const char *path, mode_t mode) {
  int (*real)(const char *, mode_t) = (int (*)(const char *, mode_t))dlsym(RTLD_NEXT, "mkdir");
  refuse_inside(AT_FDCWD, path, "mkdir");
  return real(path, mode);
}
int link(const char *oldpath, const char *newpath) {
  int (*real)(const char *, const char *) = (int (*)(const char *, const char *))dlsym(RTLD_NEXT, "link");
  if (active() && strncmp(newpath, trash, strlen(trash)) != 0) refuse_inside(AT_FDCWD, newpath, "link");
  return real(oldpath, newpath);
}
