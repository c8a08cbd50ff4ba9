package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ehrsync/ehrsync/pkg/admin"
	"github.com/ehrsync/ehrsync/pkg/secrets"
)

func init() { register(adminCommand) }

func adminCommand(env *environment) *cobra.Command {
	c := &cobra.Command{
		Use:   "admin",
		Short: "make an operator's admin API token (token), with its line for server.admin_tokens_file",
	}
	c.AddCommand(adminToken(env))
	return c
}

func adminToken(env *environment) *cobra.Command {
	c := &cobra.Command{
		Use:   "token --operator NAME [--tokens-file FILE]",
		Short: "make an operator's admin API token: printed once on stdout, its hash line appended to the tokens file",
		Long: "Make an operator's admin API token (32 random bytes) and print it once on stdout; only its hash is kept:\n" +
			"its NAME:sha256 line is appended to --tokens-file (created 0600), or printed on stderr.",
	}
	operator := c.Flags().String("operator", "", "the operator the token names: the actor of what it does (letters, digits, . _ @ -)")
	file := c.Flags().String("tokens-file", "", "append the token's line to this file (server.admin_tokens_file; created 0600 when missing); without it the line is printed on stderr")
	c.RunE = func(*cobra.Command, []string) error {
		if err := admin.CheckOperator(*operator); err != nil {
			return usageError{fmt.Errorf("--operator: %w", err)}
		}
		token, err := admin.NewToken()
		if err != nil {
			return err
		}
		line := admin.TokenLine(*operator, token)
		if *file == "" {
			fmt.Fprintf(env.stderr, "add this line to server.admin_tokens_file, then restart the daemon:\n%s\n", line)
		} else {
			if err := appendLine(*file, line); err != nil {
				return fmt.Errorf("--tokens-file: %w", err)
			}
			fmt.Fprintf(env.stderr, "%s: added operator %s; restart the daemon to take it\n", *file, *operator)
		}
		// The token itself, once: only its hash is kept.
		fmt.Fprintln(env.stdout, token)
		return nil
	}
	return c
}

// appendLine appends line to the tokens file, creating it private; an
// existing file that group or others may read is refused, as the daemon
// refuses it.
func appendLine(path, line string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err == nil && fi.Mode().Perm()&0o077 != 0 {
		err = &secrets.PermissionError{Path: path, Mode: fi.Mode()}
	}
	if err == nil && fi.Size() > 0 {
		// Start on a line of its own when the file does not end a line.
		b := make([]byte, 1)
		if r, rerr := os.Open(path); rerr == nil {
			if _, serr := r.ReadAt(b, fi.Size()-1); serr == nil && b[0] != '\n' {
				line = "\n" + line
			}
			r.Close()
		}
	}
	if err == nil {
		_, err = f.WriteString(strings.TrimSuffix(line, "\n") + "\n")
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
