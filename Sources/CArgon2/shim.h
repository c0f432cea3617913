#include <argon2.h>

#ifdef __linux__
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Lowers the scheduling priority of the calling thread only (Linux applies setpriority to a
   thread id), so that hashing uses spare CPU and yields to the event loops. Returns 0 or -1. */
static inline int identity_lower_thread_priority(int niceness) {
    return setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), niceness);
}

/* The scheduling priority (niceness) of the calling thread. */
static inline int identity_thread_priority(void) {
    return getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
}
#else
static inline int identity_lower_thread_priority(int niceness) { (void)niceness; return -1; }
static inline int identity_thread_priority(void) { return 0; }
#endif
