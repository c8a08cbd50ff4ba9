package lake

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"strings"
	"syscall"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	icebergio "github.com/apache/iceberg-go/io"
	"github.com/jackc/pgx/v5"
	"gocloud.dev/gcerrors"
)

// ProbeDir is the folder under the warehouse where ProbeWarehouse writes
// its probe files.
const ProbeDir = "_ehrsync_check"

// ProbeKind is how a warehouse probe failed.
type ProbeKind string

// The ways a probe fails.
const (
	// ProbeDenied: the storage answered and refused (credentials, a role
	// without write access, a read-only directory).
	ProbeDenied ProbeKind = "denied"
	// ProbeUnreachable: the storage did not answer (network, DNS, timeout).
	ProbeUnreachable ProbeKind = "unreachable"
	// ProbeMismatch: the file read back is not the file written.
	ProbeMismatch ProbeKind = "mismatch"
	// ProbeFailed: any other failure (a path that is not a directory, a
	// scheme without a file system).
	ProbeFailed ProbeKind = "failed"
)

// ProbeError is a failed warehouse probe. Its text names the warehouse,
// the step and a reason that holds no secret: a storage's refusal is
// shown by its HTTP status and error code, never its response body.
type ProbeError struct {
	Warehouse string
	// Step is what failed: "open", "write", "read" or "delete".
	Step string
	Kind ProbeKind
	Err  error
	// reason is Err as it may be shown.
	reason string
}

func (e *ProbeError) Error() string {
	return fmt.Sprintf("lake warehouse %s: %s a probe file: %s", e.Warehouse, e.Step, e.reason)
}

func (e *ProbeError) Unwrap() error { return e.Err }

// Reason is why the probe failed, with no secret in it.
func (e *ProbeError) Reason() string { return e.reason }

// ProbeWarehouse checks that the lake can write where its tables go: it
// writes a small file under warehouse (ProbeDir/<random>) with iceberg-go's
// file system for the warehouse's URL and props (those of Config.Props),
// reads it back, and deletes it. A failure is a *ProbeError.
func ProbeWarehouse(ctx context.Context, warehouse string, props map[string]string) error {
	fail := func(step string, kind ProbeKind, err error) error {
		if kind == "" {
			kind = probeKind(ctx, err)
		}
		return &ProbeError{Warehouse: warehouse, Step: step, Kind: kind, Err: err, reason: probeReason(err, props)}
	}
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return fail("open", ProbeFailed, err)
	}
	dir := strings.TrimRight(warehouse, "/") + "/" + ProbeDir
	name := dir + "/" + hex.EncodeToString(id[:])
	fsys, err := icebergio.LoadFS(ctx, props, name)
	if err != nil {
		return fail("open", "", err)
	}
	if c, ok := fsys.(interface{ Close() error }); ok {
		defer c.Close()
	}
	w, ok := fsys.(icebergio.WriteFileIO)
	if !ok {
		return fail("open", ProbeFailed, fmt.Errorf("the file system of %s cannot write files", warehouse))
	}
	want := []byte("ehrsync check: this file is written, read back and deleted; " + hex.EncodeToString(id[:]) + "\n")
	if err := w.WriteFile(name, want); err != nil {
		return fail("write", "", err)
	}
	got, err := readAll(fsys, name)
	if err == nil && !bytes.Equal(got, want) {
		err = fmt.Errorf("read %d bytes back, not the %d written", len(got), len(want))
		return fail("read", ProbeMismatch, err)
	}
	if err != nil {
		_ = fsys.Remove(name)
		return fail("read", "", err)
	}
	if err := fsys.Remove(name); err != nil {
		return fail("delete", "", err)
	}
	// The probe folder, when the storage has folders and it is empty now.
	_ = fsys.Remove(dir)
	return nil
}

func readAll(fsys icebergio.IO, name string) ([]byte, error) {
	if r, ok := fsys.(icebergio.ReadFileIO); ok {
		return r.ReadFile(name)
	}
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var b bytes.Buffer
	_, err = b.ReadFrom(f)
	return b.Bytes(), err
}

// probeKind classes a probe's error.
func probeKind(ctx context.Context, err error) ProbeKind {
	var resp *azcore.ResponseError
	var op *net.OpError
	var dns *net.DNSError
	switch {
	case errors.As(err, &resp):
		if resp.StatusCode == 401 || resp.StatusCode == 403 {
			return ProbeDenied
		}
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS), gcerrors.Code(err) == gcerrors.PermissionDenied:
		return ProbeDenied
	case errors.As(err, &op), errors.As(err, &dns), errors.Is(err, context.DeadlineExceeded), ctx.Err() != nil:
		return ProbeUnreachable
	}
	return ProbeFailed
}

// probeReason is what may be shown of a probe's error: a storage
// service's HTTP status and error code (its body can echo what was
// signed), the network's error, a local file's error; else the error's
// text with every secret property's value taken out.
func probeReason(err error, props map[string]string) string {
	var resp *azcore.ResponseError
	if errors.As(err, &resp) {
		if resp.ErrorCode != "" {
			return fmt.Sprintf("the storage answered HTTP %d %s", resp.StatusCode, resp.ErrorCode)
		}
		return fmt.Sprintf("the storage answered HTTP %d", resp.StatusCode)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // without the request's URL, which can carry a SAS token
	}
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Error()
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return dns.Error()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "no answer in time"
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		if _, local := pe.Err.(syscall.Errno); local {
			return pe.Error()
		}
	}
	if c := gcerrors.Code(err); c != gcerrors.Unknown && c != gcerrors.OK {
		return "the storage answered " + c.String()
	}
	return redact(err.Error(), props)
}

// redact takes the values of secret properties out of s.
func redact(s string, props map[string]string) string {
	for k, v := range props {
		if v != "" && secretProp(k) {
			s = strings.ReplaceAll(s, v, "[redacted]")
		}
	}
	return s
}

// secretProp says whether an iceberg-go storage property holds a secret.
func secretProp(key string) bool {
	k := strings.ToLower(key)
	for _, w := range []string{"key", "secret", "token", "sas", "password", "credential"} {
		if strings.Contains(k, w) && !strings.HasSuffix(k, ".account.name") {
			return true
		}
	}
	return false
}

// Outbox is t's lake outbox in the store (sink.OutboxName).
func (t Table) Outbox() pgx.Identifier { return t.outbox() }

// StateName is t's table_name in ehrsync.lake_tables.
func (t Table) StateName() string { return t.Schema + "." + t.Name }
