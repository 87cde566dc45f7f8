// Command mkimage builds chorus test images as archives for docker load or
// ctr images import:
//
//	go run ./tests/images/cmd/mkimage -o DIR [-format docker|oci] [-tag REF]... PROGRAM...
//
// PROGRAM is web, crash or burn. Each -tag (repeatable) goes to the program
// whose name ends its repository (example/web:2 to web), or to the only
// program given; a program without a tag gets example/<name>:1. The paths
// written are printed one per line.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/chorus-sh/chorus/tests/images"
)

type tagList []string

func (t *tagList) String() string     { return strings.Join(*t, ",") }
func (t *tagList) Set(s string) error { *t = append(*t, s); return nil }

func main() {
	out := flag.String("o", "", "output directory (required)")
	formatName := flag.String("format", "docker", "archive format: docker or oci")
	var tags tagList
	flag.Var(&tags, "tag", "image tag, e.g. example/web:2 (repeatable)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: mkimage -o DIR [-format docker|oci] [-tag REF]... PROGRAM...")
		fmt.Fprintln(os.Stderr, "programs:", strings.Join(images.Programs, " "))
		flag.PrintDefaults()
	}
	flag.Parse()
	progs := flag.Args()
	if *out == "" || len(progs) == 0 {
		flag.Usage()
		os.Exit(2)
	}
	format, err := images.ParseFormat(*formatName)
	if err != nil {
		fail(err)
	}

	byProg := map[string][]string{}
	for _, t := range tags {
		prog := progs[0]
		if len(progs) > 1 {
			repo, _, _ := strings.Cut(path.Base(t), ":")
			prog = repo
		}
		if !slices.Contains(progs, prog) {
			fail(fmt.Errorf("tag %s matches none of the programs %v", t, progs))
		}
		byProg[prog] = append(byProg[prog], t)
	}
	for _, prog := range progs {
		p, err := images.Build(context.Background(), prog, *out, byProg[prog], format)
		if err != nil {
			fail(err)
		}
		fmt.Println(p)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "mkimage:", err)
	os.Exit(1)
}
