// Command crash is a test container image that exits on its own: it prints
// "starting", sleeps $SLEEP seconds (default 1, fractions allowed), prints
// "exiting with N" and exits with code $CODE (default 1).
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

func main() {
	fmt.Println("starting")
	sleep, code := 1.0, 1
	if s := os.Getenv("SLEEP"); s != "" {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bad SLEEP %q: %v\n", s, err)
			os.Exit(2)
		}
		sleep = v
	}
	if s := os.Getenv("CODE"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bad CODE %q: %v\n", s, err)
			os.Exit(2)
		}
		code = v
	}
	time.Sleep(time.Duration(sleep * float64(time.Second)))
	fmt.Printf("exiting with %d\n", code)
	os.Exit(code)
}
