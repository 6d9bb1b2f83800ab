// vefs-fdholder: keeps the VEFS server's FUSE device descriptors open while
// the server is down, so that a crash of the one process carrying every VE
// root does not abort their connections: the kernel queues the VEs' requests
// (they stall, as on a slow disk) until a new server takes the descriptors
// back and answers.
//
// It takes a descriptor straight out of the server with pidfd_getfd(2)
// (root, or ptrace rights over the server), and a new server takes it back
// the same way; nothing crosses the socket but one command line and one
// reply line:
//   hold PID FD NAME   take PID's descriptor FD and keep it as NAME
//   drop NAME          close it (the mount is gone)
//   list               "pid P", then "NAME FD" per descriptor, then "end"
// NAME is the mountpoint, with no space or newline (the server escapes it).
// It exits once it holds nothing after a drop, taking its socket's name away
// before it answers, so the next mount starts a holder of its own. A holder
// never takes the name from another that still answers on it.
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_HELD 4096

static struct {
  char* name;
  int fd;
} held[MAX_HELD];
static int nheld;
static const char* socket_path;

static int take(pid_t pid, int fd) {
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0) return -errno;
  int got = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
  int err = errno;
  close(pidfd);
  return got < 0 ? -err : got;
}

static void serve(int conn) {
  char line[8192];
  ssize_t n = read(conn, line, sizeof line - 1);
  if (n <= 0) return;
  line[n] = 0;
  char* nl = strchr(line, '\n');
  if (nl) *nl = 0;
  char reply[64];
  int pid, fd;
  char name[8192];
  if (sscanf(line, "hold %d %d %8191s", &pid, &fd, name) == 3) {
    if (nheld == MAX_HELD) {
      dprintf(conn, "error too many\n");
      return;
    }
    int got = take(pid, fd);
    if (got < 0) {
      dprintf(conn, "error %s\n", strerror(-got));
      return;
    }
    held[nheld].name = strdup(name);
    held[nheld].fd = got;
    nheld++;
    snprintf(reply, sizeof reply, "ok %d\n", got);
    dprintf(conn, "%s", reply);
  } else if (sscanf(line, "drop %8191s", name) == 1) {
    for (int i = 0; i < nheld; i++) {
      if (strcmp(held[i].name, name) != 0) continue;
      close(held[i].fd);
      free(held[i].name);
      held[i] = held[--nheld];
      break;
    }
    if (nheld == 0) unlink(socket_path);
    dprintf(conn, "ok\n");
    if (nheld == 0) exit(0);
  } else if (strcmp(line, "list") == 0) {
    dprintf(conn, "pid %d\n", getpid());
    for (int i = 0; i < nheld; i++) dprintf(conn, "%s %d\n", held[i].name, held[i].fd);
    dprintf(conn, "end\n");
  } else {
    dprintf(conn, "error unknown command\n");
  }
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: vefs-fdholder SOCKET\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(argv[1]) >= sizeof addr.sun_path) {
    fprintf(stderr, "vefs-fdholder: socket path too long\n");
    return 1;
  }
  strcpy(addr.sun_path, argv[1]);
  socket_path = argv[1];
  int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe >= 0 && connect(probe, (struct sockaddr*)&addr, sizeof addr) == 0) {
    fprintf(stderr, "vefs-fdholder: another holder answers on %s\n", argv[1]);
    return 1;
  }
  if (probe >= 0) close(probe);
  unlink(argv[1]);
  if (s < 0 || bind(s, (struct sockaddr*)&addr, sizeof addr) < 0 || listen(s, 16) < 0) {
    perror("vefs-fdholder");
    return 1;
  }
  // Ready: whoever started us may connect now.
  fprintf(stdout, "ready\n");
  fflush(stdout);
  for (;;) {
    int conn = accept4(s, NULL, NULL, SOCK_CLOEXEC);
    if (conn < 0) continue;
    serve(conn);
    close(conn);
  }
}
