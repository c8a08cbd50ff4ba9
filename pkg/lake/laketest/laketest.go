// Package laketest holds test tools for ehrsync's change lake (Apache Iceberg
// tables): Read reads a table back with an independent reader from npm
// (tools/lakereader/read.mjs), and StartAzurite runs an Azure Blob emulator
// on loopback for tests of production storage. Only tests import it.
//
// Both need the npm packages of tools/lakereader installed
// (`npm ci --prefix tools/lakereader`); without them the calling test fails,
// it is not skipped.
package laketest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
)

// installHint is the command that installs the npm packages both tools need.
const installHint = "npm ci --prefix tools/lakereader"

// RepoRoot is the root of the ehrsync repository, found from this file's
// directory (pkg/lake/laketest).
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("laketest: cannot locate its own source file")
	}
	root := filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("laketest: no go.mod at %s: %v", root, err)
	}
	return root
}

// toolDir returns tools/lakereader after checking that node and the npm
// packages are there; it fails the test with the fix otherwise.
func toolDir(t testing.TB) (dir, node string) {
	t.Helper()
	dir = filepath.Join(RepoRoot(t), "tools", "lakereader")
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("laketest: node is not installed (apt-get install nodejs npm), then run %s", installHint)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules")); err != nil {
		t.Fatalf("laketest: %s/node_modules is missing: run %s", dir, installHint)
	}
	return dir, node
}

// Row is one row as read.mjs prints it: column name to value. Values are
// nil, string, bool or json.Number (decoded with UseNumber, so int64 values
// stay exact); read.mjs documents the encoding of each Iceberg type.
type Row map[string]any

// Read reads the Iceberg table whose metadata file is metadataLocation (a
// path, file:// or http(s) URL) with tools/lakereader/read.mjs and returns
// its rows (the current snapshot's data files, in file order).
func Read(t testing.TB, metadataLocation string) []Row {
	t.Helper()
	dir, node := toolDir(t)
	cmd := exec.Command(node, filepath.Join(dir, "read.mjs"), metadataLocation)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("laketest: read.mjs %s: %v\n%s", metadataLocation, err, stderr.String())
	}
	var rows []Row
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 0, 1<<20), 256<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.UseNumber()
		var r Row
		if err := dec.Decode(&r); err != nil {
			// The line holds row values: say where, not what.
			t.Fatalf("laketest: read.mjs printed a line that is not a JSON object (row %d): %v", len(rows), err)
		}
		rows = append(rows, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("laketest: reading read.mjs output: %v", err)
	}
	return rows
}

// Azurite's well-known development account and key (public, documented by
// Microsoft; they open nothing but a local emulator).
const (
	AzuriteAccount = "devstoreaccount1"
	AzuriteKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// Azure is an Azurite blob service started by StartAzurite, with one empty
// container.
type Azure struct {
	// Endpoint is host:port of the blob service (127.0.0.1:port).
	Endpoint string
	// Container is the container StartAzurite created.
	Container string
	// Warehouse is an abfs:// URL of a folder in the container, for the
	// catalog's "warehouse" property.
	Warehouse string
	// Props are iceberg-go's properties for its Azure IO (register it with
	// import _ "github.com/apache/iceberg-go/io/gocloud/azure").
	Props map[string]string
	// Client is an azblob client on the service.
	Client *azblob.Client
}

// StartAzurite starts azurite-blob from tools/lakereader/node_modules on
// 127.0.0.1 with a free port, its data in a t.TempDir, waits until it
// answers, creates the container "lake" and returns how to reach it. The
// emulator is stopped when the test ends.
func StartAzurite(t testing.TB) Azure {
	t.Helper()
	dir, _ := toolDir(t)
	bin := filepath.Join(dir, "node_modules", ".bin", "azurite-blob")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("laketest: %s is missing: run %s", bin, installHint)
	}
	port := freePort(t)
	data := t.TempDir()
	endpoint := fmt.Sprintf("127.0.0.1:%d", port)
	serviceURL := fmt.Sprintf("http://%s/%s/", endpoint, AzuriteAccount)
	logs := startEmulator(t, data, serviceURL+"?comp=list", bin,
		"--blobHost", "127.0.0.1",
		"--blobPort", strconv.Itoa(port),
		"--location", data,
		"--skipApiVersionCheck",
		"--silent",
		"--loose",
	)
	cred, err := azblob.NewSharedKeyCredential(AzuriteAccount, AzuriteKey)
	if err != nil {
		t.Fatalf("laketest: azurite credential: %v", err)
	}
	client, err := azblob.NewClientWithSharedKeyCredential(serviceURL, cred, nil)
	if err != nil {
		t.Fatalf("laketest: azblob client: %v", err)
	}
	const container = "lake"
	if _, err := client.CreateContainer(context.Background(), container, nil); err != nil {
		t.Fatalf("laketest: create container: %v\n%s", err, logs.String())
	}
	return Azure{
		Endpoint:  endpoint,
		Container: container,
		Warehouse: fmt.Sprintf("abfs://%s@%s.dfs.core.windows.net/warehouse", container, AzuriteAccount),
		Props: map[string]string{
			"adls.auth.shared-key.account.name": AzuriteAccount,
			"adls.auth.shared-key.account.key":  AzuriteKey,
			"adls.endpoint":                     endpoint,
			"adls.protocol":                     "http",
		},
		Client: client,
	}
}

// startEmulator starts the npm emulator bin with args in dir, stopped by
// t.Cleanup, and waits until an HTTP GET of probe answers (any status).
// It returns the emulator's output, for error messages.
func startEmulator(t testing.TB, dir, probe, bin string, args ...string) *lockedBuffer {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("laketest: start %s: %v", filepath.Base(bin), err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	// It either comes up or exits.
	for {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("laketest: %s exited before it answered: %v\n%s", filepath.Base(bin), err, logs.String())
		default:
		}
		resp, err := http.Get(probe)
		if err == nil {
			resp.Body.Close()
			return logs
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// S3 is an S3 emulator (s3rver, from npm) started by StartS3, with one
// empty bucket.
type S3 struct {
	Endpoint string // http://127.0.0.1:port
	Bucket   string
	// Warehouse is an s3:// URL of a folder in the bucket.
	Warehouse string
	// Props are iceberg-go's properties for its S3 IO (register it with
	// a blank import of github.com/apache/iceberg-go/io/gocloud/s3).
	Props map[string]string
}

// s3rver's fixed credentials.
const s3Key = "S3RVER"

// StartS3 starts s3rver on 127.0.0.1 with a bucket "lake", its data in a
// temporary directory, stopped when the test ends.
func StartS3(t testing.TB) S3 {
	t.Helper()
	dir, _ := toolDir(t)
	bin := filepath.Join(dir, "node_modules", ".bin", "s3rver")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("laketest: %s is missing: run %s", bin, installHint)
	}
	port := freePort(t)
	data := t.TempDir()
	endpoint := fmt.Sprintf("http://127.0.0.1:%d", port)
	startEmulator(t, data, endpoint+"/", bin,
		"--directory", data, "--address", "127.0.0.1", "--port", strconv.Itoa(port), "--configure-bucket", "lake", "--silent")
	return S3{Endpoint: endpoint, Bucket: "lake", Warehouse: "s3://lake/warehouse",
		Props: map[string]string{"s3.endpoint": endpoint, "s3.region": "us-east-1",
			"s3.access-key-id": s3Key, "s3.secret-access-key": s3Key}}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("laketest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// lockedBuffer collects a child's output for error messages.
type lockedBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// ReadOnlyDir is a directory this process cannot write to: mode 0555, and
// for uid 0, which ignores modes, immutable (chattr +i). The test is
// skipped when neither refuses a write here.
func ReadOnlyDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatalf("laketest: %v", err)
	}
	t.Cleanup(func() { _ = os.Chmod(dir, 0o755) })
	writable := func() bool {
		f := filepath.Join(dir, "w")
		if os.WriteFile(f, nil, 0o600) != nil {
			return false
		}
		_ = os.Remove(f)
		return true
	}
	if writable() {
		if exec.Command("chattr", "+i", dir).Run() == nil {
			t.Cleanup(func() { _ = exec.Command("chattr", "-i", dir).Run() })
		}
	}
	if writable() {
		t.Skip("cannot make a directory read-only for this user here (uid 0 without chattr +i)")
	}
	return dir
}
