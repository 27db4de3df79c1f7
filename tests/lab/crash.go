package lab

import "syscall"

// Kill sends the repair server SIGKILL, as a crash would, and waits for
// it to exit. Its outcome is then filled in (no summary: it had no
// chance to print one).
func (r *Repair) Kill() {
	select {
	case <-r.done:
		return
	default:
	}
	r.cmd.Signal(syscall.SIGKILL)
	<-r.done
}
