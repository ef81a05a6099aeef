//go:build !linux

package webdavtest

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }
