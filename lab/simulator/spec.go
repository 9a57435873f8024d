package main

import (
	"encoding/json"
	"fmt"
	"os"
)

// The resolved lab spec written by src/lab/resolved-spec.ts: the lab spec of SPEC section 7 with every
// default filled in (power, home datastore, disk mode: missing ones are refused, not defaulted here) and,
// per datastore, the directory of the array volume it lives on and that volume's LUN canonical name.
// The TypeScript side has validated it; this side checks only what it needs to stay safe.
type labSpec struct {
	Datacenters []dcSpec `json:"datacenters"`
}

type dcSpec struct {
	Name       string        `json:"name"`
	Clusters   []clusterSpec `json:"clusters"`
	Hosts      []string      `json:"hosts"`
	Datastores []dsSpec      `json:"datastores"`
	VMs        []vmSpec      `json:"vms"`
}

type clusterSpec struct {
	Name  string   `json:"name"`
	Hosts []string `json:"hosts"`
}

type dsSpec struct {
	Name       string  `json:"name"`
	CapacityGB float64 `json:"capacityGB"`
	Path       string  `json:"path"`
	Lun        string  `json:"lun"`
}

type vmSpec struct {
	Name      string     `json:"name"`
	Host      string     `json:"host"`
	Power     string     `json:"power"`
	Tools     string     `json:"tools"`
	Datastore string     `json:"datastore"`
	Disks     []diskSpec `json:"disks"`
}

type diskSpec struct {
	Datastore string `json:"datastore"`
	SizeMB    int64  `json:"sizeMB"`
	Mode      string `json:"mode"`
	Rdm       string `json:"rdm"`
	Lun       string `json:"lun"`
}

func (d diskSpec) isRDM() bool { return d.Rdm != "" }

func loadSpec(file string) (*labSpec, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading the spec: %v", err)
	}
	var spec labSpec
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, fmt.Errorf("parsing the spec %s: %v", file, err)
	}
	for _, dc := range spec.Datacenters {
		for _, ds := range dc.Datastores {
			if ds.Path == "" || ds.Lun == "" {
				return nil, fmt.Errorf("datastore %s: the resolved spec needs path and lun", ds.Name)
			}
		}
		for _, vm := range dc.VMs {
			// Defaults are resolved on the TypeScript side only (src/lab/resolved-spec.ts): one source of truth.
			if vm.Power == "" {
				return nil, fmt.Errorf("vm %s: the resolved spec needs power", vm.Name)
			}
			if vm.Datastore == "" {
				return nil, fmt.Errorf("vm %s: the resolved spec needs datastore (the home datastore)", vm.Name)
			}
			for i, d := range vm.Disks {
				if !d.isRDM() && d.Mode == "" {
					return nil, fmt.Errorf("vm %s: disk %d: the resolved spec needs mode", vm.Name, i)
				}
			}
			if _, ok := toolsStates[vm.Tools]; !ok {
				return nil, fmt.Errorf("vm %s: the resolved spec needs tools (running, notRunning or notInstalled)", vm.Name)
			}
		}
	}
	return &spec, nil
}
