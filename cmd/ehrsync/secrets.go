package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/secrets"
)

func init() { register(secretsCommand) }

// stdin is the secrets commands' input; tests replace it.
var stdin io.Reader = os.Stdin

func secretsCommand(env *environment) *cobra.Command {
	c := &cobra.Command{
		Use:   "secrets",
		Short: "encrypt a secret (encrypt), make a key (new-key), or re-encrypt a config's enc: values (rotate-key)",
		Long: "Keep the configuration's secrets as enc:v2 values: AES-256-GCM, each bound to its field, under a key from\n" +
			secrets.EnvKey + " or " + secrets.EnvKeyFile + ".",
	}
	c.AddCommand(secretsNewKey(env), secretsEncrypt(env), secretsRotateKey(env))
	return c
}

func secretsNewKey(env *environment) *cobra.Command {
	return &cobra.Command{
		Use:   "new-key",
		Short: "print a new random key (base64 of 32 bytes) for " + secrets.EnvKey + " or " + secrets.EnvKeyFile,
		RunE: func(*cobra.Command, []string) error {
			k, err := secrets.NewKey()
			if err != nil {
				return err
			}
			fmt.Fprintln(env.stdout, k.Encode())
			return nil
		},
	}
}

func secretsEncrypt(env *environment) *cobra.Command {
	c := &cobra.Command{
		Use:   "encrypt --for KEY [--config FILE] < PLAINTEXT",
		Short: "read a secret on stdin and print its enc:v2 value for the field KEY",
		Long: "Read a secret on stdin (not echoed on a terminal) and print its enc:v2 value, bound to the field --for names,\n" +
			"under the key from " + secrets.EnvKey + " or " + secrets.EnvKeyFile + ". With --config, --for may name the field\n" +
			"by its place (orgs[N]....): the organization's name is what the value is bound to.",
	}
	forKey := c.Flags().String("for", "", "the key path of the field the value is for: store.url, store.owner_url, server.admin_token, org:NAME/source.password, org:NAME/source.ssh.password, org:NAME/source.ssh.private_key; or orgs[N].... with --config")
	path := configFlag(c)
	c.RunE = func(*cobra.Command, []string) error {
		target, err := secretTarget(*forKey, *path)
		if err != nil {
			return err
		}
		k, err := secrets.KeyFromEnv()
		if err != nil {
			return err
		}
		var b []byte
		if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			fmt.Fprint(env.stderr, "secret (not echoed): ")
			b, err = term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(env.stderr)
		} else {
			b, err = io.ReadAll(io.LimitReader(stdin, 1<<20))
		}
		if err != nil {
			return fmt.Errorf("read the secret: %w", err)
		}
		plain := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if plain == "" {
			return errors.New("secrets encrypt: empty input on stdin")
		}
		v, err := secrets.Encrypt(k, target, plain)
		if err != nil {
			return err
		}
		fmt.Fprintln(env.stdout, v)
		return nil
	}
	return c
}

func secretsRotateKey(env *environment) *cobra.Command {
	c := &cobra.Command{
		Use:   "rotate-key --config FILE [--new-key-file FILE]",
		Short: "re-encrypt the configuration file's enc: values in place, under the current key or --new-key-file's",
		Long: "Re-encrypt every enc: value of the configuration file (enc:v1 ones, and those under another key) in place,\n" +
			"under the current key or --new-key-file's. Keys come from " + secrets.EnvKey + " and " + secrets.EnvKeyPrevious +
			", or " + secrets.EnvKeyFile + ".\nNothing is written unless every value decrypts.",
	}
	path := configFlag(c)
	newKeyFile := c.Flags().String("new-key-file", "", "file holding the key to encrypt under (base64 of 32 bytes); default the current key")
	c.RunE = func(*cobra.Command, []string) error {
		if *path == "" {
			return usageError{errors.New("--config is required")}
		}
		keys, err := secrets.KeysFromEnv()
		if err != nil {
			return fmt.Errorf("keys: %w", err)
		}
		to := keys.Current()
		if *newKeyFile != "" {
			kb, err := secrets.ReadPrivate(*newKeyFile)
			if err != nil {
				return fmt.Errorf("--new-key-file: %w", err)
			}
			if to, err = secrets.ParseKey(string(kb)); err != nil {
				return fmt.Errorf("--new-key-file %s: %w", *newKeyFile, err)
			}
		}
		n, legacy, err := rotateFile(*path, keys, to)
		if err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "%s: re-encrypted %d values (%d of them enc:v1) under key %s", *path, n, legacy, to.ID())
		if *newKeyFile != "" {
			fmt.Fprintf(env.stdout, "; point %s or %s at the new key now", secrets.EnvKey, secrets.EnvKeyFile)
		}
		fmt.Fprintln(env.stdout)
		return nil
	}
	return c
}

// secretTarget is the key path `secrets encrypt --for` binds the value to:
// a secret's key path (config.SecretPaths), or a validation key path
// orgs[N].... translated through the configuration at path.
func secretTarget(forKey, path string) (string, error) {
	if forKey == "" {
		return "", usageError{errors.New("--for is required: the value is bound to its field (store.url, org:NAME/source.password, ...) and decrypts nowhere else")}
	}
	if strings.HasPrefix(forKey, "orgs[") {
		if path == "" {
			return "", usageError{fmt.Errorf("--for %s names an organization by its place: give --config FILE, or write --for org:NAME/source.password (or another field)", forKey)}
		}
		cfg, err := loadConfig(path)
		if err != nil {
			return "", err
		}
		forKey = cfg.SecretPath(forKey)
	}
	if err := config.CheckSecretPath(forKey); err != nil {
		return "", usageError{fmt.Errorf("--for: %w", err)}
	}
	return forKey, nil
}

// rotateFile re-encrypts for its field, under to, every enc: value of the
// configuration file that is enc:v1 or under another key (each decrypted
// under keys, for its key path), keeping every other byte, and replaces
// the file: the new text goes to a temporary file created exclusively
// (O_EXCL, mode 0600) beside it, synced, given the file's permission bits
// and renamed into place. Nothing is written unless every value decrypts.
// It returns how many values it re-encrypted, and how many of them were
// enc:v1.
func rotateFile(path string, keys secrets.Keyring, to secrets.Key) (n, legacy int, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return 0, 0, err
	}
	values, err := config.EncValues(b)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", path, err)
	}
	lineStart := []int{0}
	for i, c := range b {
		if c == '\n' {
			lineStart = append(lineStart, i+1)
		}
	}
	type edit struct {
		at    int
		old   string
		value string
	}
	var edits []edit
	ring := keys.With(to)
	for _, v := range values {
		plain, isLegacy, err := ring.Decrypt(v.Path, v.Value)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %s (line %d): %w", path, v.Key, v.Line, err)
		}
		if !isLegacy && strings.HasPrefix(v.Value, secrets.Prefix+to.ID()+":") {
			continue // already bound, under the target key
		}
		at, ok := valueOffset(b, lineStart, v)
		if !ok {
			return 0, 0, fmt.Errorf("%s: %s (line %d): cannot find the value in the file's text", path, v.Key, v.Line)
		}
		w, err := secrets.Encrypt(to, v.Path, plain)
		if err != nil {
			return 0, 0, err
		}
		edits = append(edits, edit{at: at, old: v.Value, value: w})
		if isLegacy {
			legacy++
		}
	}
	if len(edits) == 0 {
		return 0, 0, nil
	}
	var out bytes.Buffer
	last := 0
	for _, e := range edits {
		out.Write(b[last:e.at])
		out.WriteString(e.value)
		last = e.at + len(e.old)
	}
	out.Write(b[last:])
	if err := replaceFile(path, out.Bytes(), st.Mode().Perm()); err != nil {
		return 0, 0, err
	}
	return len(edits), legacy, nil
}

// valueOffset is the byte offset of v's text in the file: its line's
// start, Column-1 characters on, past an opening quote.
func valueOffset(b []byte, lineStart []int, v config.EncValue) (int, bool) {
	if v.Line < 1 || v.Line > len(lineStart) {
		return 0, false
	}
	at := lineStart[v.Line-1]
	for range v.Column - 1 {
		if at >= len(b) {
			return 0, false
		}
		_, size := utf8.DecodeRune(b[at:])
		at += size
	}
	if at < len(b) && (b[at] == '"' || b[at] == '\'') {
		at++
	}
	if !bytes.HasPrefix(b[at:], []byte(v.Value)) {
		return 0, false
	}
	return at, true
}

// replaceFile writes data to path by way of a temporary file beside it,
// created exclusively with mode 0600 (no one else can have it open, or
// read it while it is written), synced, given perm and renamed over path.
// A temporary file left by a run that crashed makes the next run stop and
// say so.
func replaceFile(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".rotate.tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s exists: another rotate-key is running, or one was interrupted; remove it and run again", tmp)
	}
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
