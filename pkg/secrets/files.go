package secrets

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
)

// maxFile bounds what ReadPrivate and ReadTrusted read: key files,
// secrets, CA bundles and known_hosts files are small.
const maxFile = 16 << 20

// WritableError is a file that vouches for a server (a CA bundle, an SSH
// known_hosts file) which group or others may write: whoever can write it
// can make ehrsync trust their own server, so ehrsync refuses it.
type WritableError struct {
	Path string
	Mode fs.FileMode
}

func (e *WritableError) Error() string {
	return fmt.Sprintf("%s is writable by group or others (mode %04o), who could make ehrsync trust their own server: run chmod go-w %s", e.Path, e.Mode.Perm(), e.Path)
}

// NotRegularError is a key, secret, CA or known_hosts path that is not a
// regular file (a directory, a FIFO, a device).
type NotRegularError struct {
	Path string
}

func (e *NotRegularError) Error() string { return e.Path + " is not a regular file" }

// ReadPrivate reads a file that holds a secret (a file: secret, the
// secrets key file, a key ehrsync is given): it opens path once (symbolic
// links followed), checks the open file, and reads from that descriptor,
// so that no rename between the check and the read can slip another file
// in. A file that group or others may read or write is a
// *PermissionError; one that is not a regular file a *NotRegularError.
// On Windows, where modes do not say who may read, it checks nothing.
func ReadPrivate(path string) ([]byte, error) {
	f, err := OpenPrivate(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readAll(f)
}

// OpenPrivate opens a file that holds a secret and checks the open file as
// ReadPrivate does. The caller reads from the returned file, never from
// path again (a library that takes only a path can be given the open
// file's HeldPath), and closes it.
func OpenPrivate(path string) (*os.File, error) {
	return openChecked(path, func(fi fs.FileInfo) error {
		if fi.Mode().Perm()&0o077 != 0 {
			return &PermissionError{Path: path, Mode: fi.Mode()}
		}
		return nil
	})
}

// HeldPath is a path that opens the very file f holds open, for a library
// that reads a file only by path: on Linux /proc/self/fd/N, which a rename
// or a new file at f's original path does not change. Where the system has
// no such path it is f's name, read again by that library.
func HeldPath(f *os.File) string {
	p := fmt.Sprintf("/proc/self/fd/%d", f.Fd())
	if runtime.GOOS != "linux" {
		return f.Name()
	}
	if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
		return f.Name()
	}
	return p
}

// OpenTrusted opens a file that ehrsync trusts servers by (a CA bundle, a
// known_hosts file) and checks the open file: one that group or others may
// write is a *WritableError (reading is fine: it holds nothing secret); one
// that is not a regular file a *NotRegularError. The caller reads from the
// returned file, never from path again, and closes it.
func OpenTrusted(path string) (*os.File, error) {
	return openChecked(path, func(fi fs.FileInfo) error {
		if fi.Mode().Perm()&0o022 != 0 {
			return &WritableError{Path: path, Mode: fi.Mode()}
		}
		return nil
	})
}

// ReadTrusted is OpenTrusted and a read of the open file.
func ReadTrusted(path string) ([]byte, error) {
	f, err := OpenTrusted(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readAll(f)
}

func openChecked(path string, check func(fs.FileInfo) error) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, &NotRegularError{Path: path}
	}
	if runtime.GOOS != "windows" {
		if err := check(fi); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

func readAll(f *os.File) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", f.Name(), maxFile)
	}
	return b, nil
}

// IsFileRefused reports whether err is a file ehrsync refuses for its
// permissions or kind (PermissionError, WritableError, NotRegularError).
func IsFileRefused(err error) bool {
	var pe *PermissionError
	var we *WritableError
	var ne *NotRegularError
	return errors.As(err, &pe) || errors.As(err, &we) || errors.As(err, &ne)
}
