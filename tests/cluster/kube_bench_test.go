package cluster

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"testing"
	"time"
)

// BenchmarkWatchDelivery: a change written through one peer's Kubernetes
// API (a merge patch of an annotation) until a watch on another peer's API
// delivers it. Reports the median and the maximum over b.N changes.
func BenchmarkWatchDelivery(b *testing.B) {
	peers := startCluster(b, 3, 116, "w")
	base := "/apis/apps/v1/namespaces/default/deployments"
	dep := `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"wd"},"spec":{"replicas":0,
"selector":{"matchLabels":{"app":"wd"}},"template":{"metadata":{"labels":{"app":"wd"}},"spec":{"containers":[{"name":"c","image":"example/web:1"}]}}}}`
	creq, _ := peers[0].Request("POST", base, bytes.NewBufferString(dep))
	creq.Header.Set("Content-Type", "application/json")
	resp, err := peers[0].HTTPClient(10 * time.Second).Do(creq)
	if err != nil || resp.StatusCode != http.StatusCreated {
		b.Fatalf("create: %v %v", err, resp)
	}
	resp.Body.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := peers[2].Request("GET", base+"?watch=1&fieldSelector=metadata.name%3Dwd", nil)
	wresp, err := peers[2].HTTPClient(0).Do(req.WithContext(ctx))
	if err != nil {
		b.Fatal(err)
	}
	defer wresp.Body.Close()
	seen := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(wresp.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var ev struct {
				Object struct {
					Metadata struct{ Annotations map[string]string }
				}
			}
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				seen <- ev.Object.Metadata.Annotations["n"]
			}
		}
		close(seen)
	}()
	var lat []time.Duration
	client := peers[0].HTTPClient(10 * time.Second)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		patch := fmt.Sprintf(`{"metadata":{"annotations":{"n":"%d"}}}`, i)
		preq, _ := peers[0].Request("PATCH", base+"/wd", bytes.NewBufferString(patch))
		preq.Header.Set("Content-Type", "application/merge-patch+json")
		start := time.Now()
		presp, err := client.Do(preq)
		if err != nil || presp.StatusCode != 200 {
			b.Fatalf("patch: %v %v", err, presp)
		}
		presp.Body.Close()
		deadline := time.After(10 * time.Second)
	wait:
		for {
			select {
			case n, ok := <-seen:
				if !ok {
					b.Fatal("watch ended")
				}
				if n == fmt.Sprint(i) {
					lat = append(lat, time.Since(start))
					break wait
				}
			case <-deadline:
				b.Fatalf("change %d not delivered in 10 s", i)
			}
		}
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}
