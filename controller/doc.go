// Package controller holds the pure decisions of the workload
// controllers every peer runs: a Job's next pods, retries, back-off and
// end (PlanJob, JobStatus), a CronJob's runs (PlanCronJob), a StatefulSet's
// ordered pods and claims (PlanStatefulSet), and the status of a pod whose
// peer is dead (NodeLost). Each takes what the agent read (the object, its
// replicated progress, its pods, the time) and returns what to write and
// run; the agent (agent/batch.go) reads, calls them and applies. No clock,
// no I/O.
package controller
