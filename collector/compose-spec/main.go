// Command compose-spec validates Compose files the way `docker compose config` does, with no
// Docker engine: it loads them with compose-go (the library Docker Compose v2 is built on), which
// validates against the Compose Specification's JSON schema, interpolates ${VAR} from the
// environment, normalises the model and checks its consistency (e.g. depends_on targets).
// On success it prints the resolved project as JSON (or YAML with -format yaml); on failure it
// prints the error and exits 1.  Used by tests/stack.py's validate_compose().
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	format := flag.String("format", "json", "output format: json or yaml")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: compose-spec [-format json|yaml] COMPOSE_FILE...\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	wd, err := os.Getwd()
	if err != nil {
		fail(err)
	}
	opts, err := cli.NewProjectOptions(flag.Args(),
		cli.WithWorkingDirectory(wd),
		cli.WithOsEnv,
		cli.WithInterpolation(true),
		cli.WithNormalization(true),
		cli.WithConsistency(true),
		cli.WithResolvedPaths(false),
	)
	if err != nil {
		fail(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		fail(err)
	}
	var out []byte
	switch *format {
	case "json":
		out, err = project.MarshalJSON()
	case "yaml":
		out, err = project.MarshalYAML()
	default:
		err = fmt.Errorf("unknown format %q", *format)
	}
	if err != nil {
		fail(err)
	}
	os.Stdout.Write(out)
	fmt.Println()
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "compose-spec:", err)
	os.Exit(1)
}
