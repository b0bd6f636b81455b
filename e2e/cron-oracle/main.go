// cron-oracle answers what Kubernetes' CronJob controller would do: for each line
// "SCHEDULE|ZONE|FROM|N" on stdin it prints the next N run times after FROM (RFC 3339),
// in UTC, space-separated, as robfig/cron v3 (the parser and Next() the controller uses,
// with the zone as a TZ= prefix, as the controller adds spec.timeZone) computes them.
// The DST tests of crates/e2e compare DataJob's schedules with it.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

func main() {
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		parts := strings.Split(in.Text(), "|")
		if len(parts) != 4 {
			fmt.Println("error: want SCHEDULE|ZONE|FROM|N")
			continue
		}
		sched, err := cron.ParseStandard("TZ=" + parts[1] + " " + parts[0])
		if err != nil {
			fmt.Println("error:", err)
			continue
		}
		t, err := time.Parse(time.RFC3339, parts[2])
		if err != nil {
			fmt.Println("error:", err)
			continue
		}
		n, err := strconv.Atoi(parts[3])
		if err != nil {
			fmt.Println("error:", err)
			continue
		}
		var out []string
		for i := 0; i < n; i++ {
			t = sched.Next(t)
			if t.IsZero() {
				break
			}
			out = append(out, t.UTC().Format(time.RFC3339))
		}
		fmt.Println(strings.Join(out, " "))
	}
}
