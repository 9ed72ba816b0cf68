package main

// This file holds `fulcrum delete connection|persistence`: the operator's
// resets (F5: tmsh delete sys connection, delete ltm persistence
// persist-records), through the management API like `show`.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/fulcrum-adc/fulcrum/api"
)

// runDelete implements `fulcrum delete connection ID` and `fulcrum delete
// persistence KEY|filters`.
func runDelete(args []string, stdout, stderr io.Writer) int {
	return newAPICLI(stdout, stderr).delete(args)
}

const deleteUsage = `usage: fulcrum delete connection ID [flags]
       fulcrum delete persistence KEY [flags]
       fulcrum delete persistence [-virtual V] [-pool P] [-profile NAME] [-member ADDR] [-all] [flags]

Resets state on a running Fulcrum.
  connection ID     abort both sides of one connection now (F5: delete sys
                    connection); IDs are in "fulcrum show connections"
  persistence KEY   forget one persistence record (F5: delete ltm
                    persistence persist-records); keys are the KEY column of
                    "fulcrum show persistence", quoted there for the shell
  persistence -pool web -member 10.0.0.5:80
                    forget every record matching all the filters given;
                    -all forgets every record

Flags may come before or after the arguments.

Flags:
`

func (c *apiCLI) delete(args []string) int {
	fs := c.newFlagSet("delete", deleteUsage)
	f := c.commonFlags(fs, 10*time.Second)
	var d api.PersistDelete
	fs.StringVar(&d.Virtual, "virtual", "", "persistence: only records of this virtual server")
	fs.StringVar(&d.Pool, "pool", "", "persistence: only records pointing into this pool")
	fs.StringVar(&d.Profile, "profile", "", "persistence: only records of this persistence profile")
	fs.StringVar(&d.Member, "member", "", "persistence: only records pointing to this member (IP:PORT)")
	fs.BoolVar(&d.All, "all", false, "persistence: every record")
	pos, err := c.parse(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	if len(pos) == 0 {
		return c.usageError(fs, "delete what? connection ID or persistence KEY")
	}
	filtered := d.Virtual != "" || d.Pool != "" || d.Profile != "" || d.Member != ""
	var id uint64
	switch pos[0] {
	case "connection", "connections", "conn":
		if len(pos) != 2 {
			return c.usageError(fs, "want one connection ID")
		}
		if filtered || d.All {
			return c.usageError(fs, "-virtual, -pool, -profile, -member and -all apply to persistence only")
		}
		if id, err = strconv.ParseUint(pos[1], 10, 64); err != nil {
			return c.usageError(fs, "connection id %q is not a number", pos[1])
		}
	case "persistence", "persist":
		switch {
		case len(pos) > 2:
			return c.usageError(fs, "unexpected argument %q (quote a key that holds spaces or |)", pos[2])
		case len(pos) == 2 && (filtered || d.All):
			return c.usageError(fs, "give a KEY or filters, not both")
		case len(pos) == 1 && !filtered && !d.All:
			return c.usageError(fs, "which records? give a KEY, a filter (-virtual, -pool, -profile, -member) or -all")
		case len(pos) == 2:
			d.Key = pos[1]
		}
	default:
		return c.usageError(fs, "cannot delete %q: want connection or persistence", pos[0])
	}
	cl, base, err := c.client(f)
	if err != nil {
		return c.usageError(fs, "%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	defer cancel()
	if pos[0] == "persistence" || pos[0] == "persist" {
		n, err := cl.DeletePersistence(ctx, d)
		if err != nil {
			return c.fail(base, err)
		}
		if n == 1 {
			fmt.Fprintln(c.stdout, "1 persistence record deleted")
		} else {
			fmt.Fprintf(c.stdout, "%d persistence records deleted\n", n)
		}
		return 0
	}
	if err := cl.KillConnection(ctx, id); err != nil {
		return c.fail(base, err)
	}
	fmt.Fprintf(c.stdout, "connection %d reset\n", id)
	return 0
}
