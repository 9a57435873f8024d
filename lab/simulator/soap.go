package main

import (
	"bytes"
	"io/ioutil"
	"net/http"
	"strings"
)

// soapGuard wraps the SOAP handler with a guard that sees the body of every SOAP call (a POST to /sdk) while
// `active` says it may have something to do. The guard either answers the call itself or passes it on to
// next (the body is readable again for next). Datastore and NFC transfers stream large bodies that must not
// be buffered, so nothing else is read.
func soapGuard(next http.Handler, active func() bool, guard func(w http.ResponseWriter, req *http.Request, body []byte)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost || !strings.HasPrefix(req.URL.Path, "/sdk") || !active() {
			next.ServeHTTP(w, req)
			return
		}
		body, err := ioutil.ReadAll(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req.Body = ioutil.NopCloser(bytes.NewReader(body))
		guard(w, req, body)
	})
}

func always() bool { return true }
