package api

import (
	"errors"
	"fmt"
)

// MaxTokenBytes bounds the API token (agent --api-token, chorus --token).
const MaxTokenBytes = 4096

// CheckToken reports whether s can be the API's bearer token. The CLI sends
// it in an HTTP header ("Authorization: Bearer <token>") and the dashboard
// in its URL fragment, so it must be visible ASCII: no spaces, no control
// characters.
func CheckToken(s string) error {
	if s == "" {
		return errors.New("the token is empty")
	}
	if len(s) > MaxTokenBytes {
		return fmt.Errorf("the token is longer than %d bytes", MaxTokenBytes)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' {
			return fmt.Errorf("the token holds the byte %#x at %d: want visible ASCII characters, no spaces", c, i)
		}
	}
	return nil
}
