// ve-launch: the steps of the VE runtime that need one single-threaded
// process between fork and exec (Node cannot run code there). Built static,
// so that the same binary can be PID 1 inside a VE root without a libc.
//
//   ve-launch start --root DIR --hostname H --log FILE [--cgroup DIR]..
//       New PID, mount, UTS, IPC, network and cgroup namespaces; PID 1 pivots
//       into DIR and runs this binary's own small init. Prints PID 1's
//       host pid on stdout and exits once PID 1 has exec'd (or 125 with the
//       reason on stderr).
//   ve-launch exec --pid PID [--cgroup DIR].. [--tty] [--report-fd N] -- CMD ARG..
//       Runs CMD in PID's namespaces and root with the same restrictions;
//       exits with CMD's status (128+N for signal N), 125 for its own failures,
//       whose reason goes to fd N if given (so that a command's own 125 and
//       its stderr stay its own), else to stderr.
//
// Both apply one policy (restrict()): capability bounding, inheritable and
// ambient sets reduced to KEEP, no_new_privs, and the seccomp filter. Exec
// joins the cgroups before it enters anything, so no moment exists in which a
// process runs inside a VE outside its limits.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/sendfile.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define FAIL 125
#define MAX_CGROUPS 16

// Kept: what root inside a VE needs to administer its own files, users and
// services. Everything else is dropped, notably SYS_ADMIN (mount, namespaces),
// SYS_MODULE, SYS_RAWIO, SYS_TIME, MKNOD, SYS_PTRACE, SYS_BOOT, NET_ADMIN
// (its network namespace belongs to the host's user namespace, so the
// capability would reach host-wide settings), DAC_READ_SEARCH
// (open_by_handle_at reaches files outside the root), LINUX_IMMUTABLE
// (unified files stay immutable), SYS_RESOURCE and SYS_NICE (limits).
static const int KEEP[] = {
  CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID, CAP_KILL, CAP_SETGID, CAP_SETUID,
  CAP_SETPCAP, CAP_NET_BIND_SERVICE, CAP_NET_RAW, CAP_SYS_CHROOT, CAP_AUDIT_WRITE, CAP_SETFCAP,
};

// Refused with EPERM: calls a VE never needs that reach the host kernel's
// global state or get around the root (keys are not namespaced; handles
// bypass the root; bpf, perf and io_uring are large attack surfaces).
static const int DENY[] = {
  __NR_keyctl, __NR_add_key, __NR_request_key, __NR_kexec_load, __NR_kexec_file_load,
  __NR_open_by_handle_at, __NR_name_to_handle_at, __NR_bpf, __NR_perf_event_open,
  __NR_init_module, __NR_finit_module, __NR_delete_module, __NR_mount, __NR_umount2,
  __NR_pivot_root, __NR_move_mount, __NR_open_tree, __NR_fsopen, __NR_fsmount, __NR_fspick,
  __NR_mount_setattr, __NR_unshare, __NR_setns, __NR_userfaultfd, __NR_acct, __NR_quotactl,
  __NR_syslog, __NR_settimeofday, __NR_clock_settime, __NR_clock_adjtime, __NR_adjtimex,
  __NR_swapon, __NR_swapoff, __NR_reboot, __NR_io_uring_setup, __NR_io_uring_enter,
  __NR_io_uring_register, __NR_lookup_dcookie, __NR_vhangup,
#ifdef __NR_iopl
  __NR_iopl, __NR_ioperm,
#endif
};

#define NS_FLAGS (CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP)

#if defined(__x86_64__)
#define AUDIT_ARCH_SELF AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define AUDIT_ARCH_SELF AUDIT_ARCH_AARCH64
#else
#error "ve-launch knows the seccomp architecture of x86_64 and aarch64 only"
#endif

// Where a failure's reason goes: for start, a pipe from PID 1 to the launching
// parent (close-on-exec: EOF means the exec succeeded); for exec, --report-fd.
static int report_fd = -1;

static void die(const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg - 2, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if (n > (int)sizeof msg - 2) n = sizeof msg - 2;
  if (errno) n += snprintf(msg + n, sizeof msg - n, ": %s", strerror(errno));
  if (n > (int)sizeof msg - 1) n = sizeof msg - 1;
  msg[n++] = '\n';
  if (report_fd >= 0 && write(report_fd, msg, n) < 0) _exit(FAIL);
  if (report_fd < 0 && write(2, "ve-launch: ", 11) >= 0 && write(2, msg, n) < 0) _exit(FAIL);
  _exit(FAIL);
}

static void write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) die("open %s", path);
  if (write(fd, text, strlen(text)) < 0) die("write %s to %s", text, path);
  close(fd);
}

static void join_cgroups(char **cgroups, int n) {
  char path[4096], pid[32];
  snprintf(pid, sizeof pid, "%d\n", getpid());
  for (int i = 0; i < n; i++) {
    snprintf(path, sizeof path, "%s/cgroup.procs", cgroups[i]);
    write_file(path, pid);
  }
}

static void drop_capabilities(void) {
  unsigned long long keep = 0;
  for (size_t i = 0; i < sizeof KEEP / sizeof KEEP[0]; i++) keep |= 1ULL << KEEP[i];
  for (int cap = 0; cap <= 63; cap++) {
    if (keep & (1ULL << cap)) continue;
    // EINVAL: the kernel has no capability of that number.
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) die("drop capability %d from the bounding set", cap);
  }
  errno = 0;
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0) die("clear the ambient capabilities");
  struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
  struct __user_cap_data_struct data[2];
  if (syscall(SYS_capget, &hdr, data) < 0) die("capget");
  // Root's permitted set after exec is the bounding set plus the inheritable
  // set: the inheritable set must not carry a dropped capability across.
  for (int i = 0; i < 2; i++) {
    unsigned int k = (unsigned int)(keep >> (32 * i));
    data[i].inheritable &= k;
    data[i].permitted &= k;
    data[i].effective &= k;
  }
  if (syscall(SYS_capset, &hdr, data) < 0) die("capset");
}

static void install_seccomp(void) {
  enum { MAXF = 128 };
  struct sock_filter f[MAXF];
  int n = 0;
  f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
  f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_SELF, 1, 0);
  f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
  f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
#ifdef __x86_64__
  // x32 numbers would reach the same kernel entry points under other numbers.
  f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1);
  f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM);
#endif
  for (size_t i = 0; i < sizeof DENY / sizeof DENY[0]; i++) {
    f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, DENY[i], 0, 1);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM);
  }
  // clone3 passes its flags in memory the filter cannot read: ENOSYS makes
  // libc fall back to clone, whose flags it can.
  f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3, 0, 1);
  f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS);
  f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 0, 3);
  f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]));
  f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, NS_FLAGS, 0, 1);
  f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM);
  f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  if (n > MAXF) die("seccomp filter too long");
  struct sock_fprog prog = { (unsigned short)n, f };
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0) die("install the seccomp filter");
}

/** The policy every process of a VE starts under. */
static void restrict_self(void) {
  errno = 0;
  drop_capabilities();
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("set no_new_privs");
  install_seccomp();
}

static char *const CLEAN_ENV[] = {
  "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "SHELL=/bin/sh", NULL, NULL,
};

static void set_clean_env(const char *term) {
  static char termvar[128];
  static char *env[sizeof CLEAN_ENV / sizeof CLEAN_ENV[0]];
  memcpy(env, CLEAN_ENV, sizeof env);
  if (term) {
    snprintf(termvar, sizeof termvar, "TERM=%s", term);
    env[3] = termvar;
  }
  environ = env;
}

// ---- start ----

static void at(char *buf, size_t size, const char *root, const char *rel) {
  snprintf(buf, size, "%s/%s", root, rel);
}

static void mount_or_die(const char *src, const char *target, const char *type, unsigned long flags, const char *data) {
  if (mount(src, target, type, flags, data) < 0) die("mount %s on %s", type ? type : src, target);
}

static void mkdir_p(const char *path, mode_t mode) {
  if (mkdir(path, mode) < 0 && errno != EEXIST) die("mkdir %s", path);
  errno = 0;
}

static void make_dev(const char *root) {
  char p[4096];
  at(p, sizeof p, root, "dev");
  mkdir_p(p, 0755);
  mount_or_die("tmpfs", p, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=64k,nr_inodes=64");
  static const struct { const char *name; int major, minor; } DEVS[] = {
    { "null", 1, 3 }, { "zero", 1, 5 }, { "full", 1, 7 }, { "random", 1, 8 }, { "urandom", 1, 9 }, { "tty", 5, 0 },
  };
  for (size_t i = 0; i < sizeof DEVS / sizeof DEVS[0]; i++) {
    at(p, sizeof p, root, "dev/");
    strncat(p, DEVS[i].name, sizeof p - strlen(p) - 1);
    if (mknod(p, S_IFCHR | 0666, makedev(DEVS[i].major, DEVS[i].minor)) < 0) die("mknod %s", p);
    if (chmod(p, 0666) < 0) die("chmod %s", p);
  }
  at(p, sizeof p, root, "dev/pts");
  mkdir_p(p, 0755);
  mount_or_die("devpts", p, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620");
  at(p, sizeof p, root, "dev/shm");
  mkdir_p(p, 01777);
  mount_or_die("shm", p, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=65536k");
  static const char *LINKS[][2] = {
    { "pts/ptmx", "dev/ptmx" }, { "/proc/self/fd", "dev/fd" }, { "/proc/self/fd/0", "dev/stdin" },
    { "/proc/self/fd/1", "dev/stdout" }, { "/proc/self/fd/2", "dev/stderr" },
  };
  for (size_t i = 0; i < sizeof LINKS / sizeof LINKS[0]; i++) {
    at(p, sizeof p, root, LINKS[i][1]);
    if (symlink(LINKS[i][0], p) < 0) die("symlink %s", p);
  }
}

/**
 * The console: a terminal of the VE's own devpts, bind-mounted on
 * /dev/console, whose master PID 1 keeps and copies to the log. A bind
 * mount of the log itself would let the VE truncate it ('>' opens with
 * O_TRUNC); through a terminal it can only append.
 */
static int make_console(const char *root) {
  char p[4096], slave[4096];
  at(p, sizeof p, root, "dev/pts/ptmx");
  int master = open(p, O_RDWR | O_NOCTTY);
  unsigned int n;
  if (master < 0 || unlockpt(master) < 0 || ioctl(master, TIOCGPTN, &n) < 0) die("allocate the console terminal");
  snprintf(slave, sizeof slave, "%s/dev/pts/%u", root, n);
  at(p, sizeof p, root, "dev/console");
  int fd = open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) die("create %s", p);
  close(fd);
  mount_or_die(slave, p, NULL, MS_BIND, NULL);
  return master;
}

static void read_only(const char *path) {
  if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) < 0) {
    if (errno == ENOENT) { errno = 0; return; }
    die("bind %s", path);
  }
  mount_or_die(NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
}

static void mask(const char *root, const char *path) {
  struct stat st;
  if (stat(path, &st) < 0) { errno = 0; return; }
  if (S_ISDIR(st.st_mode)) {
    mount_or_die("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0,nr_inodes=1");
  } else {
    char null[4096];
    at(null, sizeof null, root, "dev/null");
    mount_or_die(null, path, NULL, MS_BIND, NULL);
  }
}

/** /proc and /sys as container runtimes harden them: a VE root could otherwise run code as host root. */
static void harden_proc_sys(const char *root) {
  static const char *RO[] = { "proc/sys", "proc/sysrq-trigger", "proc/irq", "proc/bus", "proc/fs" };
  static const char *MASKED[] = {
    "proc/kcore", "proc/keys", "proc/key-users", "proc/timer_list", "proc/sched_debug", "proc/latency_stats",
    "proc/timer_stats", "proc/acpi", "proc/asound", "proc/scsi", "proc/kallsyms", "proc/kmsg", "proc/config.gz",
    "sys/firmware", "sys/kernel/security", "sys/kernel/debug", "sys/fs/cgroup", "sys/devices/virtual/powercap",
  };
  char p[4096];
  for (size_t i = 0; i < sizeof MASKED / sizeof MASKED[0]; i++) {
    at(p, sizeof p, root, MASKED[i]);
    mask(root, p);
  }
  for (size_t i = 0; i < sizeof RO / sizeof RO[0]; i++) {
    at(p, sizeof p, root, RO[i]);
    read_only(p);
  }
}

static void loopback_up(void) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) die("socket");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strcpy(ifr.ifr_name, "lo");
  if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) die("SIOCGIFFLAGS lo");
  ifr.ifr_flags |= IFF_UP;
  if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) die("SIOCSIFFLAGS lo");
  close(s);
}

/**
 * A sealed in-memory copy of this binary, for PID 1 to exec: /proc/1/exe then
 * points at the copy, so a VE that opens it cannot write the host's launcher.
 */
static int sealed_self(void) {
  int fd = memfd_create("ve-init", MFD_CLOEXEC | MFD_ALLOW_SEALING | 0x0010U /* MFD_EXEC */);
  if (fd < 0 && errno == EINVAL) fd = memfd_create("ve-init", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) die("memfd_create");
  int self = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  if (self < 0) die("open /proc/self/exe");
  struct stat st;
  if (fstat(self, &st) < 0) die("fstat /proc/self/exe");
  for (off_t off = 0; off < st.st_size;) {
    ssize_t n = sendfile(fd, self, &off, st.st_size - off);
    if (n <= 0) die("copy /proc/self/exe");
  }
  close(self);
  if (fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) < 0) die("seal the init copy");
  return fd;
}

// ---- the built-in init ----

/**
 * PID 1: reaps orphans, copies the console to the log (its stdout), and on
 * SIGTERM passes SIGTERM to every process and exits when they are gone.
 */
static int init_main(int master, int ready) {
  // Until now, PID 1 died with its launcher (see start_main); from here on the VE is on its own.
  prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0);
  if (write(ready, "1", 1) != 1) return FAIL;
  close(ready);
  fcntl(master, F_SETFD, FD_CLOEXEC);
  // Holding the console open itself keeps the master from reporting a hangup (and poll from spinning) while no process has it open.
  int console = open("/dev/console", O_RDWR | O_NOCTTY | O_CLOEXEC);
  struct termios tio;
  if (console >= 0 && tcgetattr(console, &tio) == 0) {
    cfmakeraw(&tio);
    tcsetattr(console, TCSANOW, &tio);
  }
  sigset_t set;
  sigemptyset(&set);
  int sigs[] = { SIGTERM, SIGINT, SIGPWR, SIGCHLD };
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaddset(&set, sigs[i]);
  // Blocked and read from a signalfd: no signal can slip in between a check and a wait.
  sigprocmask(SIG_BLOCK, &set, NULL);
  int sfd = signalfd(-1, &set, SFD_CLOEXEC);
  printf("ve-init: started\n");
  fflush(stdout);
  int told = 0;
  struct pollfd fds[2] = { { sfd, POLLIN, 0 }, { master, POLLIN, 0 } };
  for (;;) {
    if (poll(fds, 2, -1) < 0) continue;
    if (fds[1].revents & POLLIN) {
      char buf[4096];
      ssize_t n = read(master, buf, sizeof buf);
      if (n > 0 && write(1, buf, n) < 0) fds[1].fd = -1;
    }
    if (!(fds[0].revents & POLLIN)) continue;
    struct signalfd_siginfo info;
    if (read(sfd, &info, sizeof info) != sizeof info) continue;
    if (info.ssi_signo != SIGCHLD && !told) {
      printf("ve-init: stopping: SIGTERM to every process\n");
      fflush(stdout);
      kill(-1, SIGTERM);
      told = 1;
    }
    pid_t p;
    while ((p = waitpid(-1, NULL, WNOHANG)) > 0) {}
    if (told && p < 0 && errno == ECHILD) break;
  }
  printf("ve-init: every process ended; stopping the VE\n");
  fflush(stdout);
  return 0;
}

static void start_pid1(const char *root, const char *hostname, int log, int self, int ready) {
  char p[4096];
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) die("make / private");
  // A mount of its own, so that pivot_root finds a mount point whatever root is.
  mount_or_die(root, root, NULL, MS_BIND | MS_REC, NULL);
  at(p, sizeof p, root, "proc");
  mkdir_p(p, 0555);
  mount_or_die("proc", p, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  at(p, sizeof p, root, "sys");
  mkdir_p(p, 0555);
  mount_or_die("sysfs", p, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  make_dev(root);
  int master = make_console(root);
  harden_proc_sys(root);
  if (sethostname(hostname, strlen(hostname)) < 0) die("sethostname %s", hostname);
  if (chdir(root) < 0) die("chdir %s", root);
  // Stacking the old root under the new one, then detaching it, needs no
  // directory inside the VE root for it.
  if (syscall(SYS_pivot_root, ".", ".") < 0) die("pivot_root into %s", root);
  if (umount2(".", MNT_DETACH) < 0) die("detach the host's root");
  if (chdir("/") < 0) die("chdir /");
  loopback_up();
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null < 0) die("open /dev/null");
  if (dup2(null, 0) < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0) die("dup2");
  if (setsid() < 0) die("setsid");
  restrict_self();
  set_clean_env(NULL);
  char fd[16], readyfd[16];
  snprintf(fd, sizeof fd, "%d", master);
  snprintf(readyfd, sizeof readyfd, "%d", ready);
  char *argv[] = { "ve-init", "--ve-init", fd, readyfd, NULL };
  fexecve(self, argv, environ);
  die("exec the built-in init");
}

static int start_main(const char *root, const char *hostname, const char *logpath, char **cgroups, int ncg) {
  if (!root || !hostname || !logpath) die("start needs --root, --hostname and --log");
  // A launcher whose caller was killed dies with it, and so does a PID 1
  // that is not ready yet: a start is never finished by nobody, out of sight
  // of the next command (which cleans up the VE's recorded cgroups).
  pid_t caller = getppid();
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) die("PR_SET_PDEATHSIG");
  if (getppid() != caller) die("the caller exited");
  errno = 0;
  join_cgroups(cgroups, ncg);
  int log = open(logpath, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (log < 0) die("open %s", logpath);
  int self = sealed_self();
  int pipefd[2], ready[2];
  if (pipe2(pipefd, O_CLOEXEC) < 0 || pipe2(ready, O_CLOEXEC) < 0) die("pipe");
  if (unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWCGROUP) < 0) die("unshare");
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) die("PR_SET_PDEATHSIG");
    close(pipefd[0]);
    close(ready[0]);
    report_fd = pipefd[1];
    if (fcntl(ready[1], F_SETFD, 0) < 0) die("fcntl");
    start_pid1(root, hostname, log, self, ready[1]);
  }
  close(pipefd[1]);
  close(ready[1]);
  char msg[1024];
  ssize_t n = read(pipefd[0], msg, sizeof msg - 1);
  if (n > 0) {
    msg[n] = 0;
    fprintf(stderr, "ve-launch: %s", msg);
    waitpid(pid, NULL, 0);
    return FAIL;
  }
  char ok;
  if (read(ready[0], &ok, 1) != 1) {
    fprintf(stderr, "ve-launch: PID 1 ended before its init was ready\n");
    return FAIL;
  }
  printf("%d\n", pid);
  return 0;
}

// ---- exec ----

static struct termios saved_tio;
static int tio_saved;
static pid_t child_pid;
static volatile sig_atomic_t winch;

static void restore_tty(void) {
  if (tio_saved) tcsetattr(0, TCSADRAIN, &saved_tio);
}

static void forward(int sig) {
  if (sig == SIGWINCH) winch = 1;
  else if (child_pid > 0) kill(child_pid, sig);
}

static void enter_namespaces(pid_t target) {
  static const char *NS[] = { "cgroup", "ipc", "uts", "net", "pid", "mnt" };
  char p[64];
  int fds[sizeof NS / sizeof NS[0]];
  for (size_t i = 0; i < sizeof NS / sizeof NS[0]; i++) {
    snprintf(p, sizeof p, "/proc/%d/ns/%s", target, NS[i]);
    if ((fds[i] = open(p, O_RDONLY | O_CLOEXEC)) < 0) die("open %s", p);
  }
  snprintf(p, sizeof p, "/proc/%d/root", target);
  int root = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) die("open %s", p);
  for (size_t i = 0; i < sizeof NS / sizeof NS[0]; i++) {
    if (setns(fds[i], 0) < 0) die("setns %s of pid %d", NS[i], target);
    close(fds[i]);
  }
  if (fchdir(root) < 0 || chroot(".") < 0 || chdir("/") < 0) die("enter the root of pid %d", target);
  close(root);
}

static void relay(int master) {
  char buf[4096];
  struct pollfd fds[2] = { { 0, POLLIN, 0 }, { master, POLLIN, 0 } };
  for (;;) {
    if (winch) {
      struct winsize ws;
      winch = 0;
      if (ioctl(0, TIOCGWINSZ, &ws) == 0) ioctl(master, TIOCSWINSZ, &ws);
    }
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = read(master, buf, sizeof buf);
      if (n <= 0) return;
      if (write(1, buf, n) < 0) return;
    }
    if (fds[0].revents & (POLLIN | POLLHUP)) {
      ssize_t n = read(0, buf, sizeof buf);
      if (n <= 0) {
        // End of input: the shell sees it as ^D, and poll stops watching stdin (a negative fd is skipped).
        if (write(master, "\x04", 1) < 0) return;
        fds[0].fd = -1;
        continue;
      }
      if (write(master, buf, n) < 0) return;
    }
  }
}

static int exec_main(pid_t target, int tty, char **cgroups, int ncg, char **cmd) {
  if (target <= 0 || !cmd[0]) die("exec needs --pid and a command");
  errno = 0;
  join_cgroups(cgroups, ncg);
  const char *term = getenv("TERM");
  enter_namespaces(target);
  int master = -1;
  char slave[128];
  if (tty) {
    master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0 || unlockpt(master) < 0 || ptsname_r(master, slave, sizeof slave) != 0) die("allocate a terminal in the VE");
    struct winsize ws;
    if (ioctl(0, TIOCGWINSZ, &ws) == 0) ioctl(master, TIOCSWINSZ, &ws);
    if (isatty(0) && tcgetattr(0, &saved_tio) == 0) {
      struct termios raw = saved_tio;
      cfmakeraw(&raw);
      tio_saved = tcsetattr(0, TCSADRAIN, &raw) == 0;
    }
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = forward;
  int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH };
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaction(sigs[i], &sa, NULL);
  child_pid = fork();
  if (child_pid < 0) { restore_tty(); die("fork"); }
  if (child_pid == 0) {
    signal(SIGWINCH, SIG_DFL);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) signal(sigs[i], SIG_DFL);
    if (tty) {
      restore_tty();
      if (setsid() < 0) die("setsid");
      int s = open(slave, O_RDWR);
      if (s < 0 || ioctl(s, TIOCSCTTY, 0) < 0) die("open %s", slave);
      if (dup2(s, 0) < 0 || dup2(s, 1) < 0 || dup2(s, 2) < 0) die("dup2");
      if (s > 2) close(s);
    }
    restrict_self();
    set_clean_env(tty ? (term ? term : "xterm") : NULL);
    execvp(cmd[0], cmd);
    die("exec %s", cmd[0]);
  }
  if (tty) relay(master);
  int status;
  while (waitpid(child_pid, &status, 0) < 0) {
    if (errno != EINTR) { restore_tty(); die("waitpid"); }
  }
  restore_tty();
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

int main(int argc, char **argv) {
  if (argc == 4 && strcmp(argv[1], "--ve-init") == 0) return init_main(atoi(argv[2]), atoi(argv[3]));
  if (argc < 2) die("usage: ve-launch start|exec [options]");
  // Nothing of this process may be inspected or traced from inside a VE while it still holds every capability.
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) die("PR_SET_DUMPABLE");
  const char *mode = argv[1];
  static const struct option OPTS[] = {
    { "root", required_argument, 0, 'r' }, { "hostname", required_argument, 0, 'h' },
    { "log", required_argument, 0, 'l' }, { "cgroup", required_argument, 0, 'c' },
    { "pid", required_argument, 0, 'p' }, { "report-fd", required_argument, 0, 'e' },
    { "tty", no_argument, 0, 't' }, { 0, 0, 0, 0 },
  };
  const char *root = NULL, *hostname = NULL, *log = NULL;
  char *cgroups[MAX_CGROUPS];
  int ncg = 0, tty = 0;
  pid_t target = 0;
  int c;
  optind = 2;
  while ((c = getopt_long(argc, argv, "+", OPTS, NULL)) != -1) {
    switch (c) {
      case 'r': root = optarg; break;
      case 'h': hostname = optarg; break;
      case 'l': log = optarg; break;
      case 'p': target = (pid_t)atoi(optarg); break;
      case 't': tty = 1; break;
      case 'e':
        report_fd = atoi(optarg);
        if (fcntl(report_fd, F_SETFD, FD_CLOEXEC) < 0) { report_fd = -1; die("--report-fd %s", optarg); }
        break;
      case 'c':
        if (ncg == MAX_CGROUPS) die("more than %d --cgroup", MAX_CGROUPS);
        cgroups[ncg++] = optarg;
        break;
      default: errno = 0; die("bad option");
    }
  }
  if (strcmp(mode, "start") == 0) return start_main(root, hostname, log, cgroups, ncg);
  if (strcmp(mode, "exec") == 0) return exec_main(target, tty, cgroups, ncg, argv + optind);
  errno = 0;
  die("unknown mode %s", mode);
}
