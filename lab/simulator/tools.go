package main

import (
	"bytes"
	"fmt"
	"net/http"
	"regexp"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// toolsStates maps the lab spec's `tools` values to what vCenter reports in guest.toolsStatus and
// guest.toolsRunningStatus. The simulator itself reports every VM as without Tools and never quiesces.
var toolsStates = map[string]struct {
	status  types.VirtualMachineToolsStatus
	running types.VirtualMachineToolsRunningStatus
}{
	"running":      {types.VirtualMachineToolsStatusToolsOk, types.VirtualMachineToolsRunningStatusGuestToolsRunning},
	"notRunning":   {types.VirtualMachineToolsStatusToolsNotRunning, types.VirtualMachineToolsRunningStatusGuestToolsNotRunning},
	"notInstalled": {types.VirtualMachineToolsStatusToolsNotInstalled, types.VirtualMachineToolsRunningStatusGuestToolsNotRunning},
}

// toolsRegistry knows the VMs whose Tools do not run. Filled during the build, read-only once serving.
type toolsRegistry struct {
	withoutTools map[types.ManagedObjectReference]string
}

func newToolsRegistry() *toolsRegistry {
	return &toolsRegistry{withoutTools: map[types.ManagedObjectReference]string{}}
}

func (t *toolsRegistry) set(vm *simulator.VirtualMachine, state string) {
	s := toolsStates[state]
	vm.Guest.ToolsStatus = s.status
	vm.Guest.ToolsRunningStatus = string(s.running)
	if vm.Summary.Guest != nil {
		vm.Summary.Guest.ToolsStatus = s.status
	}
	if state != "running" {
		t.withoutTools[vm.Self] = state
	}
}

var createSnapshot = regexp.MustCompile(`<(?:\w+:)?CreateSnapshot_Task[\s>]`)
var quiesceTrue = regexp.MustCompile(`<(?:\w+:)?quiesce>\s*true\s*<`)

// guard answers a quiesced CreateSnapshot_Task of a powered-on VM without running Tools as vCenter does: the
// task is created and fails with ToolsUnavailable (nothing is snapshotted). Everything else passes through.
func (t *toolsRegistry) guard(next http.Handler) http.Handler {
	active := func() bool { return len(t.withoutTools) > 0 }
	return soapGuard(next, active, func(w http.ResponseWriter, req *http.Request, body []byte) {
		if !createSnapshot.Match(body) || !quiesceTrue.Match(body) {
			next.ServeHTTP(w, req)
			return
		}
		m := thisRef.FindSubmatch(body)
		if m == nil {
			next.ServeHTTP(w, req)
			return
		}
		ref := types.ManagedObjectReference{Type: string(m[1]), Value: string(bytes.TrimSpace(m[2]))}
		state, without := t.withoutTools[ref]
		vm, _ := simulator.Map.Get(ref).(*simulator.VirtualMachine)
		if !without || vm == nil || vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
			next.ServeHTTP(w, req)
			return
		}
		writeFailedTask(w, vm, toolsMessage(state))
	})
}

func toolsMessage(state string) string {
	if state == "notInstalled" {
		return "Cannot complete operation because VMware Tools is not installed in this virtual machine."
	}
	return "Cannot complete operation because VMware Tools is not running in this virtual machine."
}

func writeFailedTask(w http.ResponseWriter, vm *simulator.VirtualMachine, message string) {
	fault := &types.ToolsUnavailable{}
	task := simulator.CreateTask(vm, "createSnapshot", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		return nil, fault
	})
	ref := task.Run()
	// The simulator's message is the Go type name; vCenter's says what is wrong.
	simulator.Map.Update(task, []types.PropertyChange{
		{Name: "info.error", Val: types.LocalizedMethodFault{Fault: fault, LocalizedMessage: message}},
	})
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+
		`<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>`+
		`<CreateSnapshot_TaskResponse xmlns="urn:vim25"><returnval type="Task">%s</returnval>`+
		`</CreateSnapshot_TaskResponse></soapenv:Body></soapenv:Envelope>`, ref.Value)
}
