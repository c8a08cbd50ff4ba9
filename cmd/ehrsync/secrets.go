package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"golang.org/x/term"

	"github.com/ehrsync/ehrsync/pkg/secrets"
)

func init() {
	commands["secrets"] = command{summary: "encrypt a secret (encrypt), make a key (new-key), or re-encrypt a config's enc: values (rotate-key)", run: runSecrets}
}

// stdin is the secrets commands' input; tests replace it.
var stdin io.Reader = os.Stdin

func runSecrets(_ context.Context, env *environment, args []string) error {
	if len(args) == 0 {
		return usageError{errors.New("secrets: want a subcommand: encrypt, new-key or rotate-key")}
	}
	switch args[0] {
	case "new-key":
		fs := newFlags(env, "secrets new-key", "")
		if err := parse(fs, args[1:]); err != nil {
			return err
		}
		k, err := secrets.NewKey()
		if err != nil {
			return err
		}
		fmt.Fprintln(env.stdout, k.Encode())
		return nil
	case "encrypt":
		fs := newFlags(env, "secrets encrypt", "< PLAINTEXT  (key from "+secrets.EnvKey+" or "+secrets.EnvKeyFile+")")
		if err := parse(fs, args[1:]); err != nil {
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
		v, err := secrets.Encrypt(k, plain)
		if err != nil {
			return err
		}
		fmt.Fprintln(env.stdout, v)
		return nil
	case "rotate-key":
		fs := newFlags(env, "secrets rotate-key", "--config FILE --new-key-file FILE  (old key from "+secrets.EnvKey+" or "+secrets.EnvKeyFile+"; writes FILE in place)")
		path := fs.String("config", "", "configuration file whose enc: values to re-encrypt")
		newKeyFile := fs.String("new-key-file", "", "file holding the new key (base64 of 32 bytes)")
		if err := parse(fs, args[1:]); err != nil {
			return err
		}
		if *path == "" || *newKeyFile == "" {
			return usageError{errors.New("--config and --new-key-file are required")}
		}
		oldKey, err := secrets.KeyFromEnv()
		if err != nil {
			return fmt.Errorf("old key: %w", err)
		}
		if err := secrets.CheckPrivate(*newKeyFile); err != nil {
			return fmt.Errorf("--new-key-file: %w", err)
		}
		kb, err := os.ReadFile(*newKeyFile)
		if err != nil {
			return fmt.Errorf("--new-key-file: %w", err)
		}
		newKey, err := secrets.ParseKey(string(kb))
		if err != nil {
			return fmt.Errorf("--new-key-file %s: %w", *newKeyFile, err)
		}
		n, err := rotateFile(*path, oldKey, newKey)
		if err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "%s: re-encrypted %d values; point %s or %s at the new key now\n", *path, n, secrets.EnvKey, secrets.EnvKeyFile)
		return nil
	}
	return usageError{fmt.Errorf("secrets: unknown subcommand %q (want encrypt, new-key or rotate-key)", args[0])}
}

var encValueRE = regexp.MustCompile(`enc:v1:[A-Za-z0-9_-]+`)

// rotateFile re-encrypts every enc:v1: value in the file under newKey,
// keeping everything else byte for byte, and replaces the file atomically.
// Nothing is written unless every value decrypts under oldKey.
func rotateFile(path string, oldKey, newKey secrets.Key) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	var firstErr error
	n := 0
	out := encValueRE.ReplaceAllFunc(b, func(m []byte) []byte {
		v, err := secrets.Reencrypt(oldKey, newKey, string(m))
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("%s: value %d: %w", path, n+1, err)
			}
			return m
		}
		n++
		return []byte(v)
	})
	if firstErr != nil {
		return 0, firstErr
	}
	if bytes.Equal(out, b) {
		return 0, nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	tmp := path + ".rotate.tmp"
	if err := os.WriteFile(tmp, out, st.Mode().Perm()); err != nil {
		return 0, err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return 0, err
	}
	return n, nil
}
