package main

import (
	"bytes"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// Datastore removal as a real vCenter does it, which govmomi's simulator 0.24 does not:
//
//   - vCenter refuses to remove a datastore that a VM still uses (a disk backing or its home on it) with
//     ResourceInUse. The simulator only checks the VMs created on it (Datastore.vm), not disks added later
//     with ReconfigVM_Task, so it removes a datastore under an attached disk.
//   - vCenter drops a datastore from a VM's `datastore` list and file layout once the VM has nothing left on
//     it. The simulator never forgets: a VM keeps the layoutEx files (and the datastore reference) of a disk
//     it no longer has, and once that datastore is removed, every later layout update (CreateSnapshot_Task,
//     ReconfigVM_Task) looks the datastore up by name and panics ("mo.Entity is nil, not
//     *simulator.Datastore"). That is what a backup after attach + detach ran into.
//
// The guard below runs before the simulator's Destroy_Task on a Datastore (the simulator has no
// RemoveDatastore): it refuses a datastore in use, and otherwise forgets it in every VM, so the simulator's
// state is what vCenter's would be.

var destroyDatastore = regexp.MustCompile(`<(?:\w+:)?Destroy_Task[\s>]`)
var datastoreThis = regexp.MustCompile(`<(?:\w+:)?_this[^>]*type="Datastore"[^>]*>([^<]+)<`)

func datastoreRemovalGuard(next http.Handler) http.Handler {
	return soapGuard(next, always, func(w http.ResponseWriter, req *http.Request, body []byte) {
		m := datastoreThis.FindSubmatch(body)
		if m == nil || !destroyDatastore.Match(body) {
			next.ServeHTTP(w, req)
			return
		}
		ref := types.ManagedObjectReference{Type: "Datastore", Value: string(bytes.TrimSpace(m[1]))}
		ds, ok := simulator.Map.Get(ref).(*simulator.Datastore)
		if !ok {
			next.ServeHTTP(w, req)
			return
		}
		if user := datastoreUser(ds.Name); user != "" {
			writeResourceInUse(w, ds.Name, user)
			return
		}
		forgetDatastore(ds)
		next.ServeHTTP(w, req)
	})
}

// onDatastore tells whether a datastore path (`[name] dir/file`) is on the datastore `name`.
func onDatastore(path, name string) bool {
	return strings.HasPrefix(path, "["+name+"]")
}

// datastoreUser names a VM with its home or a disk on the datastore, or returns "".
func datastoreUser(name string) string {
	for _, e := range simulator.Map.All("VirtualMachine") {
		vm, ok := e.(*simulator.VirtualMachine)
		if !ok {
			continue
		}
		user := ""
		simulator.Map.WithLock(vm, func() {
			if vm.Config == nil {
				return
			}
			if onDatastore(vm.Config.Files.VmPathName, name) {
				user = vm.Name
				return
			}
			for _, dev := range vm.Config.Hardware.Device {
				b, ok := dev.GetVirtualDevice().Backing.(types.BaseVirtualDeviceFileBackingInfo)
				if ok && onDatastore(b.GetVirtualDeviceFileBackingInfo().FileName, name) {
					user = vm.Name
					return
				}
			}
		})
		if user != "" {
			return user
		}
	}
	return ""
}

// forgetDatastore removes what VMs still remember of a datastore they no longer use: its files in their
// layouts, its usage entry and its reference in their datastore list.
func forgetDatastore(ds *simulator.Datastore) {
	for _, e := range simulator.Map.All("VirtualMachine") {
		vm, ok := e.(*simulator.VirtualMachine)
		if !ok {
			continue
		}
		simulator.Map.WithLock(vm, func() {
			if vm.LayoutEx != nil {
				files := vm.LayoutEx.File[:0]
				for _, f := range vm.LayoutEx.File {
					if !onDatastore(f.Name, ds.Name) {
						files = append(files, f)
					}
				}
				vm.LayoutEx.File = files
			}
			if vm.Storage != nil {
				usage := vm.Storage.PerDatastoreUsage[:0]
				for _, u := range vm.Storage.PerDatastoreUsage {
					if u.Datastore != ds.Self {
						usage = append(usage, u)
					}
				}
				vm.Storage.PerDatastoreUsage = usage
			}
			refs := vm.Datastore[:0]
			for _, r := range vm.Datastore {
				if r != ds.Self {
					refs = append(refs, r)
				}
			}
			vm.Datastore = refs
		})
	}
}

func writeResourceInUse(w http.ResponseWriter, datastore, vm string) {
	escape := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace
	msg := escape(fmt.Sprintf("The resource '%s' is in use: VM %s has files on it", datastore, vm))
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(http.StatusInternalServerError)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+
		`<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" `+
		`xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault>`+
		`<faultcode>ServerFaultCode</faultcode><faultstring>%s</faultstring>`+
		`<detail><ResourceInUseFault xmlns="urn:vim25" xsi:type="ResourceInUse"><name>%s</name></ResourceInUseFault>`+
		`</detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>`, msg, escape(datastore))
}
