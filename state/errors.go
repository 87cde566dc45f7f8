package state

import (
	"errors"
	"fmt"

	"github.com/chorus-sh/chorus/api"
)

// The store's refusals, for errors.Is. The errors it returns carry what a
// message needs (NotFoundError, ExistsError, InvalidError); the HTTP layer
// (agent/kube.go) turns them into Kubernetes statuses.
var (
	// ErrNotFound: the object, or the namespace it would be in, does not
	// exist (404 NotFound).
	ErrNotFound = errors.New("not found")
	// ErrExists: a create of an object that exists (409 AlreadyExists).
	ErrExists = errors.New("already exists")
	// ErrConflict: a write whose precondition the stored object does not
	// meet (409 Conflict). No write of the store checks one today: writes
	// merge field by field, and resourceVersion preconditions are checked
	// by the apiserver against what it serves.
	ErrConflict = errors.New("conflict")
	// ErrInvalid: a write that would leave an object that does not
	// validate (422 Invalid); the error wraps the *api.ManifestError.
	ErrInvalid = errors.New("invalid")
	// ErrCannotOrphan: an object whose dependents cannot outlive it was
	// deleted with propagation Orphan (400 BadRequest).
	ErrCannotOrphan = errors.New("cannot orphan")
)

// NotFoundError is ErrNotFound with its message.
type NotFoundError struct{ Msg string }

func (e *NotFoundError) Error() string        { return e.Msg }
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

// ExistsError is ErrExists: a create of the object Name of Resource (as
// GroupResource names it) that exists.
type ExistsError struct{ Resource, Name string }

func (e *ExistsError) Error() string        { return fmt.Sprintf("%s %q already exists", e.Resource, e.Name) }
func (e *ExistsError) Is(target error) bool { return target == ErrExists }

// InvalidError is ErrInvalid: a write refused because the object it would
// leave does not validate; it unwraps to the *api.ManifestError naming
// each field at fault.
type InvalidError struct{ Err *api.ManifestError }

func (e *InvalidError) Error() string        { return e.Err.Error() }
func (e *InvalidError) Unwrap() error        { return e.Err }
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

func newInvalid(errs []api.FieldError) error {
	return &InvalidError{Err: &api.ManifestError{Errors: errs}}
}
