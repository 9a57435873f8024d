package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sync"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// rdmRegistry remembers the RDM disks injected into VMs. Several simulator code paths (disk layout refresh
// after snapshot removal, device reconfiguration, destroy, clone) assume every disk has a flat backing and
// panic on an RDM, so the guard hides a VM's RDM disks for the duration of those calls and puts them back.
type rdmRegistry struct {
	mu    sync.Mutex
	disks map[types.ManagedObjectReference][]*rdmDisk
	// per-VM: a guarded call and its restore must not interleave with another one on the same VM
	vmLocks map[types.ManagedObjectReference]*sync.Mutex
}

type rdmDisk struct {
	device   *types.VirtualDisk
	fileName string // datastore path of the mapping file
	fileSize int64
}

func newRDMRegistry() *rdmRegistry {
	return &rdmRegistry{
		disks:   map[types.ManagedObjectReference][]*rdmDisk{},
		vmLocks: map[types.ManagedObjectReference]*sync.Mutex{},
	}
}

// inject adds an RDM disk to a VM that exists already and writes its mapping file in the VM's home
// directory. Called before serving, so it touches the object without locks.
func (r *rdmRegistry) inject(vm *simulator.VirtualMachine, home dsSpec, spec vmSpec, index int, d diskSpec) (string, error) {
	devices := vm.Config.Hardware.Device
	used := map[int32]map[int32]bool{}
	var key int32 = 2000
	for _, dev := range devices {
		v := dev.GetVirtualDevice()
		if v.Key >= key {
			key = v.Key + 1
		}
		if v.UnitNumber != nil {
			if used[v.ControllerKey] == nil {
				used[v.ControllerKey] = map[int32]bool{}
			}
			used[v.ControllerKey][*v.UnitNumber] = true
		}
	}
	var ctrl types.BaseVirtualSCSIController
	var unit int32 = -1
	for _, dev := range devices {
		c, ok := dev.(types.BaseVirtualSCSIController)
		if !ok {
			continue
		}
		ck := c.GetVirtualSCSIController().Key
		for u := int32(0); u < 16; u++ {
			if u != 7 && !used[ck][u] {
				ctrl, unit = c, u
				break
			}
		}
		if ctrl != nil {
			break
		}
	}
	if ctrl == nil {
		return "", fmt.Errorf("no free SCSI unit")
	}

	name := fmt.Sprintf("%s_%d.vmdk", spec.Name, index)
	file := filepath.Join(home.Path, spec.Name, name)
	compat, mode, createType := "physicalMode", "independent_persistent", "vmfsPassthroughRawDeviceMap"
	if d.Rdm == "virtual" {
		compat, mode, createType = "virtualMode", "persistent", "vmfsRawDeviceMap"
	}
	desc := fmt.Sprintf("# Disk DescriptorFile\nversion=1\nencoding=\"UTF-8\"\nCID=fffffffe\nparentCID=ffffffff\n"+
		"createType=\"%s\"\n\n# Extent description\nRW %d VMFSRDM \"%s\"\n\n# The Disk Data Base\nddb.adapterType = \"pvscsi\"\n"+
		"# raw device %s%s\n", createType, d.SizeMB*mib/512, name, scsiDiskDevices, d.Lun)
	if err := os.WriteFile(file, []byte(desc), 0o644); err != nil {
		return "", err
	}

	dsRef := *findDatastoreRef(vm, home.Name)
	fileName := fmt.Sprintf("[%s] %s/%s", home.Name, spec.Name, name)
	kb := d.SizeMB * 1024
	disk := &types.VirtualDisk{
		VirtualDevice: types.VirtualDevice{
			Key:           key,
			ControllerKey: ctrl.GetVirtualSCSIController().Key,
			UnitNumber:    &unit,
			DeviceInfo:    &types.Description{Label: fmt.Sprintf("Hard disk %d", index+1), Summary: fmt.Sprintf("%d KB", kb)},
			Backing: &types.VirtualDiskRawDiskMappingVer1BackingInfo{
				VirtualDeviceFileBackingInfo: types.VirtualDeviceFileBackingInfo{FileName: fileName, Datastore: &dsRef},
				LunUuid:                      lunUUID(d.Lun),
				DeviceName:                   scsiDiskDevices + d.Lun,
				CompatibilityMode:            compat,
				DiskMode:                     mode,
				Uuid:                         fmt.Sprintf("6000C29%025x", key),
				Sharing:                      "sharingNone",
			},
		},
		CapacityInKB:    kb,
		CapacityInBytes: kb * 1024,
	}
	c := ctrl.GetVirtualSCSIController()
	c.Device = append(c.Device, key)
	vm.Config.Hardware.Device = append(vm.Config.Hardware.Device, disk)
	vm.Summary.Config.NumVirtualDisks++

	rd := &rdmDisk{device: disk, fileName: fileName, fileSize: int64(len(desc))}
	addRDMLayout(vm, rd)
	r.mu.Lock()
	r.disks[vm.Self] = append(r.disks[vm.Self], rd)
	r.mu.Unlock()
	return file, nil
}

func findDatastoreRef(vm *simulator.VirtualMachine, name string) *types.ManagedObjectReference {
	for _, ref := range vm.Datastore {
		if ds, ok := simulator.Map.Get(ref).(*simulator.Datastore); ok && ds.Name == name {
			return &ref
		}
	}
	host := simulator.Map.Get(*vm.Runtime.Host).(*simulator.HostSystem)
	ds := simulator.Map.FindByName(name, host.Datastore)
	ref := ds.Reference()
	return &ref
}

// addRDMLayout lists the mapping file in layoutEx like a disk descriptor, as vCenter does for RDMs.
func addRDMLayout(vm *simulator.VirtualMachine, rd *rdmDisk) {
	key := int32(-1)
	var next int32
	for _, f := range vm.LayoutEx.File {
		if f.Name == rd.fileName {
			key = f.Key
		}
		if f.Key >= next {
			next = f.Key + 1
		}
	}
	if key < 0 {
		key = next
		vm.LayoutEx.File = append(vm.LayoutEx.File, types.VirtualMachineFileLayoutExFileInfo{
			Key: key, Name: rd.fileName, Type: string(types.VirtualMachineFileLayoutExFileTypeDiskDescriptor),
			Size: rd.fileSize, UniqueSize: rd.fileSize, Accessible: types.NewBool(true),
		})
	}
	dk := rd.device.Key
	found := false
	for _, d := range vm.LayoutEx.Disk {
		if d.Key == dk {
			found = true
		}
	}
	if !found {
		vm.LayoutEx.Disk = append(vm.LayoutEx.Disk, types.VirtualMachineFileLayoutExDiskLayout{
			Key: dk, Chain: []types.VirtualMachineFileLayoutExDiskUnit{{FileKey: []int32{key}}},
		})
	}
	if vm.Layout != nil {
		found = false
		for _, d := range vm.Layout.Disk {
			if d.Key == dk {
				found = true
			}
		}
		if !found {
			vm.Layout.Disk = append(vm.Layout.Disk, types.VirtualMachineFileLayoutDiskLayout{Key: dk, DiskFile: []string{rd.fileName}})
		}
	}
}

// Methods whose simulator implementation walks the disks assuming flat backings.
var guardedMethod = regexp.MustCompile(`<(?:\w+:)?(RemoveSnapshot_Task|RemoveAllSnapshots_Task|RefreshStorageInfo|ReconfigVM_Task|Destroy_Task|CloneVM_Task|RelocateVM_Task|RevertToSnapshot_Task|RevertToCurrentSnapshot_Task)[\s>]`)
var thisRef = regexp.MustCompile(`<(?:\w+:)?_this[^>]*type="(\w+)"[^>]*>([^<]+)<`)

// guard wraps the SOAP handler: for a guarded method on a VM (or one of its snapshots) with injected RDM
// disks, the disks are taken out of the VM's device list for the call and put back afterwards.
func (r *rdmRegistry) guard(next http.Handler) http.Handler {
	return soapGuard(next, r.any, func(w http.ResponseWriter, req *http.Request, body []byte) {
		vmRef, ok := r.target(body)
		if !ok {
			next.ServeHTTP(w, req)
			return
		}
		lock := r.vmLock(vmRef)
		lock.Lock()
		defer lock.Unlock()
		vm, _ := simulator.Map.Get(vmRef).(*simulator.VirtualMachine)
		if vm == nil {
			next.ServeHTTP(w, req)
			return
		}
		r.strip(vm)
		defer r.restore(vmRef)
		next.ServeHTTP(w, req)
	})
}

func (r *rdmRegistry) any() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.disks) > 0
}

func (r *rdmRegistry) vmLock(ref types.ManagedObjectReference) *sync.Mutex {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.vmLocks[ref]
	if l == nil {
		l = &sync.Mutex{}
		r.vmLocks[ref] = l
	}
	return l
}

// target returns the VM a guarded request acts on, if that VM has injected RDM disks.
func (r *rdmRegistry) target(body []byte) (types.ManagedObjectReference, bool) {
	if !guardedMethod.Match(body) {
		return types.ManagedObjectReference{}, false
	}
	m := thisRef.FindSubmatch(body)
	if m == nil {
		return types.ManagedObjectReference{}, false
	}
	ref := types.ManagedObjectReference{Type: string(m[1]), Value: string(bytes.TrimSpace(m[2]))}
	if ref.Type == "VirtualMachineSnapshot" {
		snap, ok := simulator.Map.Get(ref).(*simulator.VirtualMachineSnapshot)
		if !ok {
			return ref, false
		}
		ref = snap.Vm
	}
	if ref.Type != "VirtualMachine" {
		return ref, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return ref, len(r.disks[ref]) > 0
}

func isInjected(dev types.BaseVirtualDevice, disks []*rdmDisk) bool {
	for _, d := range disks {
		if dev == types.BaseVirtualDevice(d.device) {
			return true
		}
	}
	return false
}

func (r *rdmRegistry) strip(vm *simulator.VirtualMachine) {
	r.mu.Lock()
	disks := r.disks[vm.Self]
	r.mu.Unlock()
	simulator.Map.WithLock(vm, func() {
		keep := make([]types.BaseVirtualDevice, 0, len(vm.Config.Hardware.Device))
		for _, dev := range vm.Config.Hardware.Device {
			if !isInjected(dev, disks) {
				keep = append(keep, dev)
			}
		}
		vm.Config.Hardware.Device = keep
	})
}

func (r *rdmRegistry) restore(ref types.ManagedObjectReference) {
	vm, ok := simulator.Map.Get(ref).(*simulator.VirtualMachine)
	if !ok {
		// destroyed: its RDM disks went with it
		r.mu.Lock()
		delete(r.disks, ref)
		r.mu.Unlock()
		return
	}
	r.mu.Lock()
	disks := r.disks[ref]
	r.mu.Unlock()
	simulator.Map.WithLock(vm, func() {
		devices := vm.Config.Hardware.Device
		for _, d := range disks {
			present := false
			for _, dev := range devices {
				if dev.GetVirtualDevice().Key == d.device.Key {
					present = true
				}
			}
			if !present {
				devices = append(devices, d.device)
			}
			addRDMLayout(vm, d)
		}
		vm.Config.Hardware.Device = devices
	})
}
