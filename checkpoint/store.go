package checkpoint

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
)

// Store keeps records as files in one directory, one per name.
type Store struct {
	Dir string
}

// maxRecordFile bounds what Load reads.
const maxRecordFile = MaxManifest + 64<<20

var nameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)

// Open returns a store in dir. The directory is created (mode 0700) by
// the first Save, so a process that never saves leaves nothing behind.
func Open(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("checkpoint: no state directory")
	}
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return nil, fmt.Errorf("checkpoint: state directory %s is not a directory", dir)
	}
	return &Store{Dir: dir}, nil
}

func (s *Store) path(name string) (string, error) {
	if !nameRE.MatchString(name) {
		return "", fmt.Errorf("checkpoint: bad record name %q", name)
	}
	return filepath.Join(s.Dir, name+".ckpt"), nil
}

// Save writes r under name atomically: a temporary file in the same
// directory, fsynced, renamed over the old record, then the directory
// fsynced. The caller makes the data a record names durable first.
func (s *Store) Save(name string, r *Record) error {
	p, err := s.path(name)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("checkpoint: create state directory: %w", err)
	}
	f, err := os.CreateTemp(s.Dir, "."+name+".tmp-*")
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(Encode(r))
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("checkpoint: save %s: %w", p, err)
	}
	if d, err := os.Open(s.Dir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("checkpoint: sync %s: %w", s.Dir, err)
		}
	}
	return nil
}

// Load reads the record saved under name. It returns an error that
// wraps fs.ErrNotExist when there is none, and ErrCorrupt (with what is
// wrong) when the file is torn, garbled or foreign.
func (s *Store) Load(name string) (*Record, error) {
	p, err := s.path(name)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if st.Size() > maxRecordFile {
		return nil, fmt.Errorf("checkpoint %s: %w: %d bytes is larger than any record", p, ErrCorrupt, st.Size())
	}
	b := make([]byte, st.Size())
	if _, err := f.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", p, err)
	}
	r, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", p, err)
	}
	return r, nil
}

// Remove deletes the record saved under name; no record is not an error.
func (s *Store) Remove(name string) error {
	p, err := s.path(name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// Names lists the records in the store.
func (s *Store) Names() ([]string, error) {
	ents, err := os.ReadDir(s.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	var out []string
	for _, e := range ents {
		if n := e.Name(); !e.IsDir() && filepath.Ext(n) == ".ckpt" && nameRE.MatchString(n[:len(n)-5]) {
			out = append(out, n[:len(n)-5])
		}
	}
	return out, nil
}
