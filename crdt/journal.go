package crdt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
)

// A Journal keeps a State on disk as a snapshot (the file Save writes) and
// a log beside it (path + ".log") of the deltas applied since, one record
// per delta. A write then costs its delta, not the whole state; the log
// is folded into a new snapshot once it outgrows the snapshot (Compact).
//
// A log record is the uvarint length of its body, the body (a register
// count and the registers, as in a delta), and the CRC-32C of the body. A
// record cut short or damaged (a crash in the middle of a write, a bad
// disk) ends the log: it and whatever follows are dropped when the
// journal is opened, and the replicas' anti-entropy brings back what
// they held. A Journal is not safe for concurrent use.
type Journal struct {
	path    string
	log     *os.File
	size    int64 // bytes in the log
	snap    int64 // bytes of the snapshot when last read or written
	dropped int64 // bytes dropped from the log's end when opened
}

// LogSuffix is appended to a journal's path to name its log.
const LogSuffix = ".log"

// minCompact is the log size under which Compact is never due: a small
// state is cheap to rewrite but not worth rewriting at every write.
const minCompact = 1 << 20

// OpenJournal opens the journal at path, creating an empty one if there
// is none, and returns the state it holds: the snapshot with the log's
// deltas merged. A snapshot that cannot be read is an error (corrupt ones
// wrap ErrMalformed) and the log is left alone; a log damaged at its end
// is cut there (see Dropped).
func OpenJournal(path string) (*Journal, *State, error) {
	st, err := Load(path)
	if err != nil {
		return nil, nil, err
	}
	j := &Journal{path: path}
	if fi, err := os.Stat(path); err == nil {
		j.snap = fi.Size()
	}
	f, err := os.OpenFile(path+LogSuffix, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("crdt: open journal log: %w", err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("crdt: read journal log %s: %w", f.Name(), err)
	}
	good := replayLog(b, st)
	if good < int64(len(b)) {
		if err := f.Truncate(good); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("crdt: cut the damaged end of journal log %s: %w", f.Name(), err)
		}
		j.dropped = int64(len(b)) - good
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("crdt: journal log %s: %w", f.Name(), err)
	}
	j.log, j.size = f, good
	return j, st, nil
}

// replayLog merges into st every whole, intact record of b, in order, up
// to the first that is not, and returns the length of the good prefix.
func replayLog(b []byte, st *State) int64 {
	var off int64
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) || uint64(len(b)-k)-n < 4 {
			break
		}
		body := b[k : k+int(n)]
		if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(b[k+int(n):]) {
			break
		}
		r := reader{b: body}
		entries, err := r.entries(0)
		if err != nil || len(r.b) != 0 {
			break
		}
		st.Merge(Delta{Entries: entries})
		rec := k + int(n) + 4
		off += int64(rec)
		b = b[rec:]
	}
	return off
}

// Dropped returns how many bytes of a damaged log's end OpenJournal cut.
func (j *Journal) Dropped() int64 { return j.dropped }

// Append adds d to the log; with sync it is on disk when Append returns
// nil. A failed append leaves the log as it was.
func (j *Journal) Append(d Delta, sync bool) error {
	if d.Len() == 0 {
		return nil
	}
	body, err := appendEntries(nil, d.Entries)
	if err != nil {
		return fmt.Errorf("crdt: journal append: %w", err)
	}
	rec := binary.AppendUvarint(make([]byte, 0, len(body)+binary.MaxVarintLen64+4), uint64(len(body)))
	rec = append(rec, body...)
	rec = binary.BigEndian.AppendUint32(rec, crc32.Checksum(body, castagnoli))
	if _, err := j.log.Write(rec); err != nil {
		return j.undo(fmt.Errorf("crdt: journal append: %w", err))
	}
	if sync {
		if err := j.log.Sync(); err != nil {
			return j.undo(fmt.Errorf("crdt: journal sync: %w", err))
		}
	}
	j.size += int64(len(rec))
	return nil
}

// undo cuts what a failed append may have written.
func (j *Journal) undo(err error) error {
	if terr := j.log.Truncate(j.size); terr != nil {
		return errors.Join(err, fmt.Errorf("crdt: journal: cut a failed append: %w", terr))
	}
	if _, serr := j.log.Seek(j.size, io.SeekStart); serr != nil {
		return errors.Join(err, serr)
	}
	return err
}

// Sync makes every appended delta durable.
func (j *Journal) Sync() error {
	if err := j.log.Sync(); err != nil {
		return fmt.Errorf("crdt: journal sync: %w", err)
	}
	return nil
}

// CompactDue reports whether the log has outgrown the snapshot (and a
// floor of 1 MiB), so that Compact is worth its cost.
func (j *Journal) CompactDue() bool { return j.size > max(minCompact, j.snap) }

// LogSize returns the bytes in the log.
func (j *Journal) LogSize() int64 { return j.size }

// Compact writes st, which must hold everything appended, as the new
// snapshot and empties the log. A crash in between leaves a snapshot and
// a log that repeats part of it, which merges to the same state.
func (j *Journal) Compact(st *State) error {
	if err := st.Save(j.path); err != nil {
		return err
	}
	if fi, err := os.Stat(j.path); err == nil {
		j.snap = fi.Size()
	}
	if err := j.log.Truncate(0); err != nil {
		return fmt.Errorf("crdt: empty journal log: %w", err)
	}
	if _, err := j.log.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("crdt: empty journal log: %w", err)
	}
	j.size = 0
	return j.Sync()
}

// Close closes the log.
func (j *Journal) Close() error { return j.log.Close() }
