package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

func newSetCmd(root *rootOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "set SUBCOMMAND",
		Short: "Set specific features on objects",
	}
	cmd.AddCommand(newSetImageCmd(root))
	return cmd
}

func newSetImageCmd(root *rootOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "image (deployment NAME... | deployment/NAME...) CONTAINER=IMAGE...",
		Short: "Update the images of a deployment's containers",
		Long: "Set the images of containers of deployments' pod templates, which rolls the\n" +
			"deployments out. The container name * stands for every container.",
		Example: "  chorus set image deployment/web web=docker.io/example/web:2\n" +
			"  chorus set image deploy web web=docker.io/example/web:2 sidecar=docker.io/example/proxy:3\n" +
			"  chorus set image deployment/web '*=docker.io/example/web:2'",
		RunE: func(cmd *cobra.Command, args []string) error {
			resources, images, err := splitImageArgs(args)
			if err != nil {
				return err
			}
			names, err := deploymentNames(resources, func(plural string) error {
				return fmt.Errorf("cannot set the image of %s: only deployments are supported", plural)
			})
			if err != nil {
				return err
			}
			req := rolloutRequest{Action: "image", Images: images, Cause: changeCause(cmd, args)}
			return postRollout(cmd.Context(), root, names, req, "image updated")
		},
	}
}

// splitImageArgs separates set image's arguments, as kubectl does:
// resources first, then CONTAINER=IMAGE pairs.
func splitImageArgs(args []string) (resources []string, images map[string]string, err error) {
	images = map[string]string{}
	for _, a := range args {
		container, image, isPair := strings.Cut(a, "=")
		switch {
		case !isPair && len(images) > 0:
			return nil, nil, fmt.Errorf("all resources must be specified before image changes: %s", a)
		case !isPair:
			resources = append(resources, a)
		case container == "" || image == "":
			return nil, nil, fmt.Errorf("invalid image format: %q: want CONTAINER=IMAGE", a)
		default:
			images[container] = image
		}
	}
	if len(images) == 0 {
		return nil, nil, errors.New("at least one image update is required: CONTAINER=IMAGE, or *=IMAGE for every container")
	}
	return resources, images, nil
}
