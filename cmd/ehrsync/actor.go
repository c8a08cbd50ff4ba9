package main

import (
	"os"
	"os/user"
)

// osUser is who runs a CLI command, recorded as the actor in the position
// history and audit unless --actor says otherwise: $USER, else the
// operating system's name for the process's user (os/user: cron jobs and
// containers often have no $USER), else "unknown".
func osUser() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "unknown"
}
