// Package guardnet owns the management listener's guard: a net.Listener
// wrapper that caps concurrent connections and keeps a small reserve of file
// descriptors of its own.
//
// The reserve is nginx's trick for "Too many open files": a few descriptors
// are held open on /dev/null; when accept(2) fails with EMFILE or ENFILE
// (the data plane has used every descriptor the process may have), the
// listener closes one of them and accepts again, so the operator's
// connection is taken and answered instead of waiting in the kernel's queue
// until the flood ends. The reserve is refilled whenever descriptors are
// free again (a guarded connection closes, or the next Accept).
//
// Go raises the soft RLIMIT_NOFILE to the hard limit at start (since Go
// 1.19), so the process already has every descriptor it may get; the
// reserve is about who gets the last ones.
package guardnet
