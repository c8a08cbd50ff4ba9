package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

// The flags several commands share are defined here, once each: one name,
// one meaning, one help text. A command's usage line (its Use) says which
// it requires.

// configFlag adds --config, the configuration file.
func configFlag(c *cobra.Command) *string {
	p := c.Flags().String("config", "", "configuration file (YAML)")
	_ = c.MarkFlagFilename("config", "yaml", "yml")
	return p
}

// orgFlag adds --org, completed with the organizations of --config's file.
func orgFlag(c *cobra.Command) *string {
	p := c.Flags().String("org", "", "organization, by its name in the configuration file")
	_ = c.RegisterFlagCompletionFunc("org", completeOrgs)
	return p
}

// tablesFlag adds --table, repeatable, completed with the tables of --org
// (of every organization without it) in --config's file.
func tablesFlag(c *cobra.Command) *[]string {
	p := c.Flags().StringArray("table", nil, "table, by its qualified name in the configuration file (dbo.claims); repeat the flag for several where the command takes several")
	_ = c.RegisterFlagCompletionFunc("table", completeTables)
	return p
}

// jsonFlag adds --json.
func jsonFlag(c *cobra.Command) *bool {
	return c.Flags().Bool("json", false, "print the result as JSON (snake_case keys) instead of text")
}

// actorFlag adds --actor. The function it returns is the flag's value:
// the operating-system user (osUser) when the flag is not given; given
// empty, a usage error.
func actorFlag(c *cobra.Command) func() (string, error) {
	p := c.Flags().String("actor", "", "who runs the command, recorded in the position history and audit (default: the operating-system user)")
	return func() (string, error) {
		switch {
		case !c.Flags().Changed("actor"):
			return osUser(), nil
		case *p == "":
			return "", usageError{errors.New("--actor: empty (name who runs the command, or leave the flag out for the operating-system user)")}
		}
		return *p, nil
	}
}

// oneTable is the one --table of a command that takes one, with --org.
func oneTable(cmd string, org string, tables []string) (string, error) {
	if org == "" || len(tables) != 1 {
		return "", usageError{fmt.Errorf("%s needs --org and one --table", cmd)}
	}
	return tables[0], nil
}

// configNames is what completion reads of the configuration file: the
// organizations' and tables' names.
type configNames struct {
	Orgs []struct {
		Name   string `yaml:"name"`
		Tables []struct {
			Name string `yaml:"name"`
		} `yaml:"tables"`
	} `yaml:"orgs"`
}

// namesOf reads the names in --config's file, leniently: completion offers
// what it can read of a file validation would refuse, and nothing when
// there is no file.
func namesOf(c *cobra.Command) configNames {
	var n configNames
	path, _ := c.Flags().GetString("config")
	if path == "" {
		return n
	}
	if b, err := os.ReadFile(path); err == nil {
		_ = yaml.Unmarshal(b, &n)
	}
	return n
}

func completeOrgs(c *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	var out []cobra.Completion
	for _, o := range namesOf(c).Orgs {
		if strings.HasPrefix(o.Name, toComplete) {
			out = append(out, o.Name)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

func completeTables(c *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	org, _ := c.Flags().GetString("org")
	var out []cobra.Completion
	for _, o := range namesOf(c).Orgs {
		if org != "" && o.Name != org {
			continue
		}
		for _, t := range o.Tables {
			if strings.HasPrefix(t.Name, toComplete) && !slices.Contains(out, t.Name) {
				out = append(out, t.Name)
			}
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}
