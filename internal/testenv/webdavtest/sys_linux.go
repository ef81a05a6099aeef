package webdavtest

import "syscall"

// sysProcAttr makes the server die with the test process, in a process
// group of its own.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}
