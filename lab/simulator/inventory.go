package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/types"
)

const (
	mib             = int64(1024 * 1024)
	disksPerBus     = 15 // unit 7 is the controller itself
	maxScsiBuses    = 4
	scsiDiskDevices = "/vmfs/devices/disks/"
)

// builder creates the inventory through the in-process client (so the simulator's own code keeps its
// bookkeeping right) and injects what the simulator cannot create (VMFS datastore info, SCSI LUNs, RDM disks)
// directly into its objects. All of it happens before the server listens, so no locks are needed.
type builder struct {
	ctx    context.Context
	client *vim25.Client
	rdm    *rdmRegistry
	tools  *toolsRegistry
}

type lunInfo struct {
	name  string
	bytes int64
	model string
}

func (b *builder) build(spec *labSpec) ([]readyVM, error) {
	root := object.NewRootFolder(b.client)
	out := []readyVM{} // JSON [] rather than null for a lab without VMs
	for _, dc := range spec.Datacenters {
		vms, err := b.datacenter(root, dc)
		if err != nil {
			return nil, fmt.Errorf("datacenter %s: %v", dc.Name, err)
		}
		out = append(out, vms...)
	}
	return out, nil
}

func (b *builder) datacenter(root *object.Folder, dc dcSpec) ([]readyVM, error) {
	ctx := b.ctx
	dco, err := root.CreateDatacenter(ctx, dc.Name)
	if err != nil {
		return nil, err
	}
	folders, err := dco.Folders(ctx)
	if err != nil {
		return nil, err
	}

	hosts := map[string]*object.HostSystem{}
	var order []*object.HostSystem
	addHost := func(name string, task *object.Task, err error) error {
		if err != nil {
			return fmt.Errorf("host %s: %v", name, err)
		}
		info, err := task.WaitForResult(ctx, nil)
		if err != nil {
			return fmt.Errorf("host %s: %v", name, err)
		}
		h := object.NewHostSystem(b.client, info.Result.(types.ManagedObjectReference))
		hosts[name] = h
		order = append(order, h)
		return nil
	}
	for _, cl := range dc.Clusters {
		cluster, err := folders.HostFolder.CreateCluster(ctx, cl.Name, types.ClusterConfigSpecEx{})
		if err != nil {
			return nil, fmt.Errorf("cluster %s: %v", cl.Name, err)
		}
		for _, h := range cl.Hosts {
			task, err := cluster.AddHost(ctx, types.HostConnectSpec{HostName: h}, true, nil, nil)
			if err := addHost(h, task, err); err != nil {
				return nil, err
			}
		}
	}
	for _, h := range dc.Hosts {
		task, err := folders.HostFolder.AddStandaloneHost(ctx, types.HostConnectSpec{HostName: h}, true, nil, nil)
		if err := addHost(h, task, err); err != nil {
			return nil, err
		}
	}
	if len(dc.Datastores) > 0 && len(order) == 0 {
		return nil, fmt.Errorf("datastores need at least one host to be mounted on")
	}

	var luns []lunInfo
	datastores := map[string]dsSpec{}
	for _, ds := range dc.Datastores {
		if err := b.datastore(ds, order); err != nil {
			return nil, fmt.Errorf("datastore %s: %v", ds.Name, err)
		}
		datastores[ds.Name] = ds
		luns = append(luns, lunInfo{ds.Lun, int64(ds.CapacityGB * 1024 * float64(mib)), "LAB VOLUME"})
	}
	seen := map[string]bool{}
	for _, vm := range dc.VMs {
		for _, d := range vm.Disks {
			if d.isRDM() && !seen[d.Lun] {
				seen[d.Lun] = true
				luns = append(luns, lunInfo{d.Lun, d.SizeMB * mib, "LAB RDM LUN"})
			}
		}
	}
	for _, h := range order {
		injectLuns(simulator.Map.Get(h.Reference()).(*simulator.HostSystem), luns)
	}

	var out []readyVM
	for _, vm := range dc.VMs {
		host, ok := hosts[vm.Host]
		if !ok {
			return nil, fmt.Errorf("vm %s: unknown host %s", vm.Name, vm.Host)
		}
		r, err := b.vm(folders, host, vm, datastores)
		if err != nil {
			return nil, fmt.Errorf("vm %s: %v", vm.Name, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// datastore creates a local datastore at the volume directory on every host of the datacenter, then makes
// it look like VMFS on the volume's LUN. The simulator makes one Datastore object per CreateLocalDatastore
// call (same reference, last one wins) and lists it once per call in the folder, so both are fixed up.
func (b *builder) datastore(ds dsSpec, hosts []*object.HostSystem) error {
	if st, err := os.Stat(ds.Path); err != nil || !st.IsDir() {
		return fmt.Errorf("volume directory %s does not exist", ds.Path)
	}
	var ref types.ManagedObjectReference
	for _, h := range hosts {
		dss, err := h.ConfigManager().DatastoreSystem(b.ctx)
		if err != nil {
			return err
		}
		d, err := dss.CreateLocalDatastore(b.ctx, ds.Name, ds.Path)
		if err != nil {
			return err
		}
		ref = d.Reference()
	}
	obj := simulator.Map.Get(ref).(*simulator.Datastore)
	folder := simulator.Map.Get(*obj.Parent).(*simulator.Folder)
	var children []types.ManagedObjectReference
	for _, c := range folder.ChildEntity {
		if c != ref || simulator.FindReference(children, ref) == nil {
			children = append(children, c)
		}
	}
	folder.ChildEntity = children

	obj.Host = nil
	for _, h := range hosts {
		obj.Host = append(obj.Host, types.DatastoreHostMount{
			Key: h.Reference(),
			MountInfo: types.HostMountInfo{
				Path:       "/vmfs/volumes/" + vmfsUUID(ds.Lun),
				AccessMode: string(types.HostMountModeReadWrite),
				Mounted:    types.NewBool(true),
				Accessible: types.NewBool(true),
			},
		})
	}

	capacity := int64(ds.CapacityGB * 1024 * float64(mib))
	now := time.Now()
	obj.Summary.Type = string(types.HostFileSystemVolumeFileSystemTypeVMFS)
	obj.Summary.Capacity = capacity
	obj.Summary.FreeSpace = capacity
	obj.Summary.MultipleHostAccess = types.NewBool(len(hosts) > 1)
	obj.Capability.RawDiskMappingsSupported = true
	obj.Info = &types.VmfsDatastoreInfo{
		DatastoreInfo: types.DatastoreInfo{
			Name:                   ds.Name,
			Url:                    ds.Path, // the simulator finds files through the URL, so it stays a local path
			FreeSpace:              capacity,
			MaxFileSize:            capacity,
			MaxVirtualDiskCapacity: capacity,
			MaxMemoryFileSize:      capacity,
			Timestamp:              &now,
		},
		MaxPhysicalRDMFileSize: 64 << 40,
		MaxVirtualRDMFileSize:  62 << 40,
		Vmfs: &types.HostVmfsVolume{
			HostFileSystemVolume: types.HostFileSystemVolume{Type: "VMFS", Name: ds.Name, Capacity: capacity},
			BlockSizeMb:          1,
			BlockSize:            1024,
			MaxBlocks:            63963136,
			MajorVersion:         6,
			Version:              "6.82",
			Uuid:                 vmfsUUID(ds.Lun),
			Extent:               []types.HostScsiDiskPartition{{DiskName: ds.Lun, Partition: 1}},
			Local:                types.NewBool(false),
			Ssd:                  types.NewBool(false),
		},
	}
	return nil
}

func injectLuns(h *simulator.HostSystem, luns []lunInfo) {
	sd := h.Config.StorageDevice
	if sd == nil {
		sd = &types.HostStorageDeviceInfo{}
		h.Config.StorageDevice = sd
	}
	for _, l := range luns {
		sd.ScsiLun = append(sd.ScsiLun, &types.HostScsiDisk{
			ScsiLun: types.ScsiLun{
				HostDevice:       types.HostDevice{DeviceName: scsiDiskDevices + l.name, DeviceType: "disk"},
				Key:              "key-vim.host.ScsiDisk-" + lunUUID(l.name),
				Uuid:             lunUUID(l.name),
				CanonicalName:    l.name,
				DisplayName:      fmt.Sprintf("SNAPKEEP Fibre Channel Disk (%s)", l.name),
				LunType:          "disk",
				Vendor:           "SNAPKEEP",
				Model:            l.model,
				Revision:         "0001",
				ScsiLevel:        6,
				OperationalState: []string{"ok"},
			},
			Capacity:   types.HostDiskDimensionsLba{BlockSize: 512, Block: l.bytes / 512},
			DevicePath: scsiDiskDevices + l.name,
			Ssd:        types.NewBool(false),
			LocalDisk:  types.NewBool(false),
		})
	}
}

// lunUUID is the vSphere-style SCSI LUN uuid for an NAA name: stable, so re-created labs look the same.
func lunUUID(lun string) string {
	sum := sha256.Sum256([]byte("lun:" + lun))
	return "0200000000" + hex.EncodeToString(sum[:13]) + "4c554e"
}

func vmfsUUID(lun string) string {
	s := hex.EncodeToString(func() []byte { x := sha256.Sum256([]byte("vmfs:" + lun)); return x[:] }())
	return s[0:8] + "-" + s[8:16] + "-" + s[16:20] + "-" + s[20:32]
}

func diskKind(d diskSpec) string {
	switch {
	case d.Rdm == "physical":
		return "rdm-physical"
	case d.Rdm == "virtual":
		return "rdm-virtual"
	case d.Mode == "independent_persistent" || d.Mode == "independent_nonpersistent":
		return "independent"
	default:
		return "flat"
	}
}

func (b *builder) vm(folders *object.DatacenterFolders, host *object.HostSystem, vm vmSpec, datastores map[string]dsSpec) (readyVM, error) {
	ctx := b.ctx
	home, ok := datastores[vm.Datastore]
	if !ok {
		return readyVM{}, fmt.Errorf("unknown datastore %s", vm.Datastore)
	}
	pool, err := host.ResourcePool(ctx)
	if err != nil {
		return readyVM{}, err
	}
	buses := (len(vm.Disks) + disksPerBus - 1) / disksPerBus
	if buses == 0 {
		buses = 1
	}
	if buses > maxScsiBuses {
		return readyVM{}, fmt.Errorf("%d disks do not fit on %d SCSI controllers", len(vm.Disks), maxScsiBuses)
	}

	var devices object.VirtualDeviceList
	var controllers []types.BaseVirtualController
	for bus := 0; bus < buses; bus++ {
		c, err := devices.CreateSCSIController("pvscsi")
		if err != nil {
			return readyVM{}, err
		}
		c.(types.BaseVirtualSCSIController).GetVirtualSCSIController().BusNumber = int32(bus)
		devices = append(devices, c)
		controllers = append(controllers, c.(types.BaseVirtualController))
	}
	// Directories on every datastore holding a disk; the home one too, so the simulator uses the plain name.
	dirs := map[string]bool{home.Path: true}
	ready := readyVM{Name: vm.Name, Disks: []readyDisk{}}
	for i, d := range vm.Disks {
		if d.isRDM() {
			continue
		}
		ds, ok := datastores[d.Datastore]
		if !ok {
			return readyVM{}, fmt.Errorf("disk %d: unknown datastore %s", i, d.Datastore)
		}
		dirs[ds.Path] = true
		disk := devices.CreateDisk(controllers[i/disksPerBus], types.ManagedObjectReference{},
			fmt.Sprintf("[%s] %s/%s_%d.vmdk", d.Datastore, vm.Name, vm.Name, i))
		disk.CapacityInKB = d.SizeMB * 1024
		disk.CapacityInBytes = d.SizeMB * mib
		// vCenter labels disks "Hard disk N"; the simulator would make up "disk-KEY-UNIT". N follows the spec's
		// disk order, as the RDM disks injected in rdm.go do.
		disk.DeviceInfo = &types.Description{Label: fmt.Sprintf("Hard disk %d", i+1)}
		backing := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
		backing.DiskMode = d.Mode
		backing.ThinProvisioned = types.NewBool(true)
		devices = append(devices, disk)
		ready.Disks = append(ready.Disks, readyDisk{
			Index:  i,
			Path:   filepath.Join(ds.Path, vm.Name, fmt.Sprintf("%s_%d-flat.vmdk", vm.Name, i)),
			SizeMB: d.SizeMB,
			Kind:   diskKind(d),
		})
	}
	for dir := range dirs {
		if err := os.MkdirAll(filepath.Join(dir, vm.Name), 0o755); err != nil {
			return readyVM{}, err
		}
	}

	config := types.VirtualMachineConfigSpec{
		Name:     vm.Name,
		GuestId:  string(types.VirtualMachineGuestOsIdentifierOtherGuest64),
		NumCPUs:  1,
		MemoryMB: 256,
		Files:    &types.VirtualMachineFileInfo{VmPathName: fmt.Sprintf("[%s] %s/%s.vmx", vm.Datastore, vm.Name, vm.Name)},
	}
	config.DeviceChange, err = devices.ConfigSpec(types.VirtualDeviceConfigSpecOperationAdd)
	if err != nil {
		return readyVM{}, err
	}
	task, err := folders.VmFolder.CreateVM(ctx, config, pool, host)
	if err != nil {
		return readyVM{}, err
	}
	info, err := task.WaitForResult(ctx, nil)
	if err != nil {
		return readyVM{}, err
	}
	ref := info.Result.(types.ManagedObjectReference)
	ready.ID = ref.Value

	// Sparse flat files of the full size, and descriptors that name them, as ESXi would leave them.
	for _, d := range ready.Disks {
		if err := os.Truncate(d.Path, d.SizeMB*mib); err != nil {
			return readyVM{}, err
		}
		desc := flatDescriptor(filepath.Base(d.Path), d.SizeMB)
		descPath := d.Path[:len(d.Path)-len("-flat.vmdk")] + ".vmdk"
		if err := os.WriteFile(descPath, []byte(desc), 0o644); err != nil {
			return readyVM{}, err
		}
	}
	if _, err := methods.RefreshStorageInfo(ctx, b.client, &types.RefreshStorageInfo{This: ref}); err != nil {
		return readyVM{}, err
	}

	simVM := simulator.Map.Get(ref).(*simulator.VirtualMachine)
	for i, d := range vm.Disks {
		if !d.isRDM() {
			continue
		}
		p, err := b.rdm.inject(simVM, home, vm, i, d)
		if err != nil {
			return readyVM{}, fmt.Errorf("rdm disk %d: %v", i, err)
		}
		ready.Disks = append(ready.Disks, readyDisk{Index: i, Path: p, SizeMB: d.SizeMB, Kind: diskKind(d)})
	}
	sortDisks(ready.Disks)
	b.tools.set(simVM, vm.Tools)

	o := object.NewVirtualMachine(b.client, ref)
	switch vm.Power {
	case "poweredOff":
	case "poweredOn", "suspended":
		t, err := o.PowerOn(ctx)
		if err == nil {
			err = t.Wait(ctx)
		}
		if err == nil && vm.Power == "suspended" {
			t, err = o.Suspend(ctx)
			if err == nil {
				err = t.Wait(ctx)
			}
		}
		if err != nil {
			return readyVM{}, fmt.Errorf("power %s: %v", vm.Power, err)
		}
	default:
		return readyVM{}, fmt.Errorf("unknown power state %q", vm.Power)
	}
	return ready, nil
}

func sortDisks(d []readyDisk) {
	for i := 1; i < len(d); i++ {
		for j := i; j > 0 && d[j].Index < d[j-1].Index; j-- {
			d[j], d[j-1] = d[j-1], d[j]
		}
	}
}

func flatDescriptor(flatName string, sizeMB int64) string {
	return fmt.Sprintf(`# Disk DescriptorFile
version=1
encoding="UTF-8"
CID=fffffffe
parentCID=ffffffff
createType="vmfs"

# Extent description
RW %d VMFS "%s"

# The Disk Data Base
ddb.adapterType = "pvscsi"
ddb.virtualHWVersion = "13"
`, sizeMB*mib/512, flatName)
}
