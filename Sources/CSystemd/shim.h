#ifndef LOCKD_CSYSTEMD_SHIM_H
#define LOCKD_CSYSTEMD_SHIM_H

// The daemon side of libsystemd: readiness and watchdog, inherited sockets, the journal.
// The variadic sd_journal_send is not callable from Swift; lockd uses sd_journal_sendv.
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>

#endif
