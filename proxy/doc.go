// Package proxy is the service proxy of a chorus peer.
package proxy
